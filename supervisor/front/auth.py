"""Who is connecting: the user id of a WebSocket handshake.

An :class:`Authenticator` is built once at start-up from the ``[auth]``
section by :meth:`Authenticator.from_config`, which reads the HS256 secret or
the RS256 public key there and then, and reports every problem at once as a
:class:`~supervisor.errors.ConfigError`. Each handshake then calls
:meth:`Authenticator.authenticate`, which returns the user id or raises
:class:`~supervisor.errors.AuthError` with a short reason that never echoes
the token (the server sends it in the 401 body).

Two modes:

- ``jwt``: the token comes from ``Authorization: Bearer <token>``, else (no
  Authorization header at all) from the ``token`` query parameter; a header
  of another scheme is refused, never rescued by the query. It must be signed with exactly the
  configured algorithm (``none``, and HS256 on an RS256 node, are refused),
  be within its ``exp``/``nbf`` (give or take ``leeway``), match
  ``audience``/``issuer`` when they are set, and carry a ``sub`` that is a
  valid user id.
- ``query``: the ``user_id`` query parameter is trusted as is (validated as
  an id). Only the dev and ci profiles may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import attrs
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options

from actors.context import validate_id
from actors.errors import InvalidIdError
from supervisor.config.schema import AuthConfig
from supervisor.errors import AuthError, ConfigError, ConfigIssue

__all__ = [
    "MAX_TOKEN_LENGTH",
    "MIN_RSA_KEY_BITS",
    "MIN_SECRET_BYTES",
    "QUERY_MODE_PROFILES",
    "TIME_CLAIMS",
    "Authenticator",
]

MIN_SECRET_BYTES = 32
"""The shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2)."""

MIN_RSA_KEY_BITS = 2048
"""The smallest RS256 public key accepted, in bits."""

MAX_TOKEN_LENGTH = 8192
"""A longer token is refused before it is parsed."""

QUERY_MODE_PROFILES = ("dev", "ci")
"""The profiles that may trust a ``user_id`` query parameter."""

_SECRET_PATH = "auth.secret_env"
_KEY_PATH = "auth.public_key_file"

_Key = bytes | RSAPublicKey

# Most specific first: InvalidSignatureError is a DecodeError.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidAudienceError, "invalid audience"),
    (jwt.InvalidIssuerError, "invalid issuer"),
    (InvalidSubjectError, "token 'sub' claim is not a string"),
    (jwt.InvalidIssuedAtError, "token 'iat' claim is not a number"),
    (jwt.DecodeError, "malformed token"),
)


@attrs.frozen
class Authenticator:
    """Turns a handshake's headers and query into a user id; build with :meth:`from_config`."""

    config: AuthConfig
    _key: _Key | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.config.mode == "jwt" and self._key is None:
            raise ValueError("jwt mode needs a key: build the Authenticator with from_config")

    @classmethod
    def from_config(cls, auth: AuthConfig, profile: str, env: Mapping[str, str]) -> Authenticator:
        """Check ``auth`` for ``profile`` and read its key; ConfigError listing every problem.

        The key is checked whenever tokens are or must be used: in jwt mode,
        and in a profile that may not use query mode.
        """
        issues = _mode_issues(auth, profile)
        key: _Key | None = None
        if auth.mode == "jwt" or profile not in QUERY_MODE_PROFILES:
            key, key_issues = _load_key(auth, env)
            issues.extend(key_issues)
        if issues:
            raise ConfigError(issues, "auth")
        return cls(auth, key)

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        """The user id of a handshake; raises :class:`AuthError` with the reason."""
        if self.config.mode == "query":
            return _query_user_id(query)
        claims = self._decode(_token_of(headers, query))
        return _subject_user_id(claims)

    def _decode(self, token: str) -> dict[str, Any]:
        auth = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                cast(_Key, self._key),  # not None in jwt mode: see __attrs_post_init__
                algorithms=[auth.jwt_algorithm],
                audience=auth.audience or None,
                issuer=auth.issuer or None,
                leeway=auth.leeway,
                options=_options(auth),
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_reason(exc)) from None
        except (ValueError, TypeError, ArithmeticError, RecursionError):
            raise AuthError("malformed token") from None
        _check_time_claims(claims)
        return claims


# --- start-up checks ----------------------------------------------------------


def _mode_issues(auth: AuthConfig, profile: str) -> list[ConfigIssue]:
    if auth.mode == "query" and profile not in QUERY_MODE_PROFILES:
        message = "query auth is allowed only in the dev and ci profiles"
        return [ConfigIssue("auth.mode", message)]
    return []


def _load_key(auth: AuthConfig, env: Mapping[str, str]) -> tuple[_Key | None, list[ConfigIssue]]:
    if auth.jwt_algorithm == "HS256":
        secret, message = _hmac_secret(auth.secret_env, env)
        return secret, [] if message is None else [ConfigIssue(_SECRET_PATH, message)]
    key, message = _rsa_public_key(auth.public_key_file)
    return key, [] if message is None else [ConfigIssue(_KEY_PATH, message)]


def _hmac_secret(name: str, env: Mapping[str, str]) -> tuple[bytes | None, str | None]:
    """The HS256 secret held by the env var ``name``, or the problem (never the secret)."""
    if not name:
        return None, "must name the environment variable holding the HS256 secret"
    secret = env.get(name, "").encode("utf-8")
    if not secret:
        return None, f"environment variable {name} is not set"
    if len(secret) < MIN_SECRET_BYTES:
        return None, (
            f"the secret in {name} is {len(secret)} bytes; HS256 needs at least {MIN_SECRET_BYTES}"
        )
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        return None, f"the secret in {name} is a PEM or DER key; HS256 needs a random secret"
    return secret, None


def _rsa_public_key(file: str) -> tuple[RSAPublicKey | None, str | None]:
    """The RS256 public key in the PEM ``file``, or the problem."""
    if not file:
        return None, "must name the PEM file holding the RS256 public key"
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        return None, f"cannot read {file}: {exc.strerror or exc}"
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None, f"{file} does not hold a PEM public key"
    if not isinstance(key, RSAPublicKey):
        return None, f"{file} holds a {type(key).__name__}, not an RSA public key"
    if key.key_size < MIN_RSA_KEY_BITS:
        return None, f"the RSA key in {file} is {key.key_size} bits; at least {MIN_RSA_KEY_BITS}"
    return key, None


# --- per handshake ------------------------------------------------------------


def _options(auth: AuthConfig) -> Options:
    return {
        "require": list(auth.claims_required),
        "verify_aud": bool(auth.audience),
        "enforce_minimum_key_length": True,
    }


def _query_user_id(query: Mapping[str, str]) -> str:
    user_id = query.get("user_id")
    if user_id is None:
        raise AuthError("missing user_id query parameter")
    try:
        return validate_id("user_id", user_id)
    except InvalidIdError as exc:
        raise AuthError(str(exc)) from None


def _header(headers: Mapping[str, str]) -> str | None:
    """The Authorization header, even an empty one; None when there is none."""
    try:
        for name in ("Authorization", "authorization"):  # websockets' Headers: either finds it
            if name in headers:
                return headers[name]
    except LookupError:  # websockets' MultipleValuesError
        raise AuthError("more than one Authorization header") from None
    return None


def _token_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The bearer token of the Authorization header; without that header, the ``token`` query.

    An Authorization header that is not ``Bearer <token>`` (another scheme,
    or no token) is refused: it is never replaced by the query parameter.
    """
    header = _header(headers)
    if header is None:
        token = (query.get("token") or "").strip()
    else:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Authorization must be 'Bearer <token>'")
    if not token:
        raise AuthError("missing bearer token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthError(f"token longer than {MAX_TOKEN_LENGTH} characters")
    return token


TIME_CLAIMS = ("exp", "nbf", "iat")
"""Claims that are times: JSON numbers only (RFC 7519's NumericDate)."""


def _check_time_claims(claims: Mapping[str, Any]) -> None:
    """AuthError for a time claim that is not a finite JSON number.

    PyJWT reads them with ``int()``, which takes ``"9999999999"``,
    ``" 99_9999_9999 "`` and ``true`` too; RFC 7519 says a NumericDate is a
    JSON number, and nothing else is one here.
    """
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if type(value) not in (int, float) or not math.isfinite(value):
            raise AuthError(f"token {name!r} claim is not a number")


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token has no {exc.claim!r} claim"
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid token")


def _subject_user_id(claims: Mapping[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise AuthError("token 'sub' claim is not a string")
    try:
        return validate_id("user_id", subject)
    except InvalidIdError as exc:
        raise AuthError(f"token 'sub' claim is not a valid user id: {exc.reason}") from None
