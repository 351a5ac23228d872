"""Unit tests of handshake authentication: query mode, JWT mode and the start-up checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import attrs
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers

from supervisor.config.load import parse_config
from supervisor.config.schema import AuthConfig
from supervisor.errors import AuthError, ConfigError, ConfigIssue
from supervisor.front.auth import MAX_TOKEN_LENGTH, Authenticator

__all__: list[str] = []

SECRET = "0123456789abcdef" * 4  # 64 bytes: long enough for HS512 too
ENV = {"WSS_JWT_SECRET": SECRET}
NO_QUERY: dict[str, str] = {}


def now() -> int:
    return int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for alice, with ``changes`` applied (a value of None drops the claim)."""
    merged: dict[str, Any] = {"sub": "alice", "exp": now() + 60, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def hs_token(payload: dict[str, Any] | None = None, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims() if payload is None else payload, key, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built without PyJWT's guards: HS256-signed with ``key``, or unsigned if None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(profile: str = "production", env: dict[str, str] = ENV, **changes: Any) -> Authenticator:
    return Authenticator.from_config(AuthConfig(**changes), profile, env)


def query_mode(profile: str = "dev") -> Authenticator:
    return Authenticator.from_config(AuthConfig(mode="query"), profile, {})


def header_values(headers: Any) -> list[str]:
    if isinstance(headers, Headers):
        return [value for _, value in headers.raw_items()]
    return list(headers.values())


def reason_of(authenticator: Authenticator, headers: Any, query: dict[str, str] = NO_QUERY) -> str:
    """The reason of the AuthError raised, checked to echo no token and chain nothing."""
    with pytest.raises(AuthError) as caught:
        authenticator.authenticate(headers, query)
    error = caught.value
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None
    for value in [*header_values(headers), *query.values()]:
        token = value.removeprefix("Bearer ")
        if len(token) > 8:
            assert token not in str(error)
    return error.reason


def config_issues(auth: AuthConfig, profile: str, env: dict[str, str]) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        Authenticator.from_config(auth, profile, env)
    return list(caught.value.issues)


def config_issues_of(data: dict[str, object]) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return list(caught.value.issues)


HYPOTHESIS_AUTHENTICATOR = hs256()


@attrs.frozen
class RsaKeys:
    """An RSA key pair on disk: the private key signs, the public PEM file configures."""

    private: rsa.RSAPrivateKey
    public_pem: bytes
    public_file: Path


def write_public_key(path: Path, private: rsa.RSAPrivateKey) -> RsaKeys:
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return RsaKeys(private, pem, path)


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> RsaKeys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return write_public_key(tmp_path_factory.mktemp("keys") / "public.pem", private)


def rs256(keys: RsaKeys) -> Authenticator:
    auth = AuthConfig(jwt_algorithm="RS256", public_key_file=str(keys.public_file))
    return Authenticator.from_config(auth, "production", {})


# --- query mode ----------------------------------------------------------------


def test_query_mode_accepts_a_valid_user_id() -> None:
    assert query_mode().authenticate({}, {"user_id": "alice@example.com"}) == "alice@example.com"


def test_query_mode_ignores_any_token() -> None:
    assert query_mode("ci").authenticate(bearer("junk"), {"user_id": "bob"}) == "bob"


def test_query_mode_refuses_a_missing_user_id() -> None:
    assert reason_of(query_mode(), {}) == "missing user_id query parameter"


@pytest.mark.parametrize("user_id", ["a:b", "", "x" * 200, "élise", "alice\n"])
def test_query_mode_refuses_an_invalid_user_id(user_id: str) -> None:
    assert reason_of(query_mode(), {}, {"user_id": user_id}).startswith("invalid user_id: ")


@pytest.mark.parametrize("profile", ["production", "staging"])
def test_query_mode_is_refused_at_start_up_in_production_and_staging(profile: str) -> None:
    issues = config_issues(AuthConfig(mode="query"), profile, ENV)
    message = "query auth is allowed only in the dev and ci profiles"
    assert issues == [ConfigIssue("auth.mode", message)]


@pytest.mark.parametrize("profile", ["ci", "dev"])
def test_query_mode_is_allowed_in_ci_and_dev_without_any_secret(profile: str) -> None:
    assert query_mode(profile).config.mode == "query"


# --- jwt mode: accepted tokens ------------------------------------------------------


def test_a_valid_hs256_token_in_the_authorization_header_gives_its_sub() -> None:
    assert hs256().authenticate(bearer(hs_token()), NO_QUERY) == "alice"


def test_a_valid_hs256_token_in_the_token_query_parameter_gives_its_sub() -> None:
    assert hs256().authenticate({}, {"token": hs_token()}) == "alice"


def test_the_header_is_found_in_lower_case_and_the_scheme_in_any_case() -> None:
    headers = {"authorization": f"bearer {hs_token()}"}
    assert hs256().authenticate(headers, NO_QUERY) == "alice"


def test_websockets_headers_are_read_case_insensitively() -> None:
    headers = Headers([("AUTHORIZATION", f"Bearer {hs_token()}")])
    assert hs256().authenticate(headers, NO_QUERY) == "alice"


def test_the_header_wins_over_the_query_parameter() -> None:
    other = hs_token(claims(sub="bob"))
    assert hs256().authenticate(bearer(hs_token()), {"token": other}) == "alice"


def test_a_token_with_the_configured_audience_and_issuer_is_accepted() -> None:
    token = hs_token(claims(aud="chat", iss="https://id.example"))
    authenticator = hs256(audience="chat", issuer="https://id.example")
    assert authenticator.authenticate(bearer(token), NO_QUERY) == "alice"


def test_an_audience_in_the_token_is_not_checked_when_none_is_configured() -> None:
    assert hs256().authenticate(bearer(hs_token(claims(aud="other"))), NO_QUERY) == "alice"


def test_a_token_without_exp_is_accepted_when_exp_is_not_required() -> None:
    token = hs_token(claims(exp=None))
    assert hs256(require_exp=False).authenticate(bearer(token), NO_QUERY) == "alice"


def test_a_valid_rs256_token_gives_its_sub(rsa_keys: RsaKeys) -> None:
    token = jwt.encode(claims(), rsa_keys.private, algorithm="RS256")
    assert rs256(rsa_keys).authenticate(bearer(token), NO_QUERY) == "alice"


# --- jwt mode: refused tokens --------------------------------------------------------


def test_a_handshake_without_a_token_is_refused() -> None:
    assert reason_of(hs256(), {}) == "missing bearer token"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer   ", "Basic YWxpY2U6cHc=", "Token abc", "Digest x", "bearer", "Bearer"],
)
@pytest.mark.parametrize("case", ["Authorization", "authorization"])
def test_an_authorization_header_that_is_not_bearer_is_refused_and_never_rescued_by_the_query(
    header: str, case: str
) -> None:
    query = {"token": hs_token()}  # a valid token: it must not stand in for the header
    reason = reason_of(hs256(), {case: header}, query)
    assert reason == "Authorization must be 'Bearer <token>'"
    websockets_headers = Headers([("AUTHORIZATION", header)])
    assert reason_of(hs256(), websockets_headers, query) == reason


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        *[("exp", v) for v in ("9999999999", " 9999999999 ", "99_9999_9999")],
        *[(c, v) for c in ("nbf", "iat") for v in ("1000", " 1000 ", "1_000", True)],
    ],
)
def test_a_time_claim_that_is_not_a_json_number_is_refused_though_pyjwt_takes_it(
    claim: str, value: object
) -> None:
    token = hs_token(claims(**{claim: value}))
    assert reason_of(hs256(), bearer(token)) == f"token {claim!r} claim is not a number"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["abc", "", [1], {"t": 1}, False])
def test_a_time_claim_of_any_other_type_is_refused_too(claim: str, value: object) -> None:
    reason_of(hs256(), bearer(hs_token(claims(**{claim: value}))))  # refused, whatever the reason


@pytest.mark.parametrize("value", [now() + 3600, float(now() + 3600), now() + 3600.5])
def test_a_time_claim_that_is_an_integer_or_a_fraction_is_accepted(value: float) -> None:
    token = hs_token(claims(exp=value, iat=now() - 1, nbf=float(now() - 1)))
    assert hs256().authenticate(bearer(token), NO_QUERY) == "alice"


def test_an_empty_token_query_parameter_is_a_missing_token() -> None:
    assert reason_of(hs256(), {}, {"token": ""}) == "missing bearer token"


def test_a_token_longer_than_the_limit_is_refused_before_parsing() -> None:
    reason = reason_of(hs256(), bearer("a" * (MAX_TOKEN_LENGTH + 1)))
    assert reason == f"token longer than {MAX_TOKEN_LENGTH} characters"


def test_two_authorization_headers_are_refused() -> None:
    headers = Headers([("Authorization", f"Bearer {hs_token()}")] * 2)
    assert reason_of(hs256(), headers) == "more than one Authorization header"


def test_a_malformed_token_is_refused() -> None:
    assert reason_of(hs256(), bearer("not.a.token")) == "malformed token"


def test_an_expired_token_is_refused() -> None:
    assert reason_of(hs256(), bearer(hs_token(claims(exp=now() - 60)))) == "token expired"


def test_a_token_not_yet_valid_is_refused() -> None:
    token = hs_token(claims(nbf=now() + 60))
    assert reason_of(hs256(), bearer(token)) == "token not yet valid"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = hs_token(key="another secret, also long enough for hs256")
    assert reason_of(hs256(), bearer(token)) == "invalid signature"


def test_an_unsigned_token_from_pyjwt_is_refused() -> None:
    token = jwt.encode(claims(), "", algorithm="none")  # "" is no key for "none"
    assert reason_of(hs256(), bearer(token)) == "token algorithm not allowed"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_an_unsigned_token_built_by_hand_is_refused(alg: str) -> None:
    token = by_hand({"alg": alg, "typ": "JWT"}, claims(), None)
    assert reason_of(hs256(), bearer(token)) == "token algorithm not allowed"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_a_token_signed_with_another_hmac_algorithm_is_refused(alg: str) -> None:
    assert reason_of(hs256(), bearer(hs_token(alg=alg))) == "token algorithm not allowed"


def test_an_hs256_token_signed_with_the_public_key_is_refused_by_an_rs256_node(
    rsa_keys: RsaKeys,
) -> None:
    token = by_hand({"alg": "HS256", "typ": "JWT"}, claims(), rsa_keys.public_pem)
    assert reason_of(rs256(rsa_keys), bearer(token)) == "token algorithm not allowed"


def test_an_rs256_token_signed_by_another_key_is_refused(rsa_keys: RsaKeys) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    assert reason_of(rs256(rsa_keys), bearer(token)) == "invalid signature"


def test_a_token_for_another_audience_is_refused() -> None:
    token = hs_token(claims(aud="billing"))
    assert reason_of(hs256(audience="chat"), bearer(token)) == "invalid audience"


def test_a_token_without_an_audience_is_refused_when_one_is_configured() -> None:
    assert reason_of(hs256(audience="chat"), bearer(hs_token())) == "token has no 'aud' claim"


def test_a_token_from_another_issuer_is_refused() -> None:
    token = hs_token(claims(iss="https://evil.example"))
    assert reason_of(hs256(issuer="https://id.example"), bearer(token)) == "invalid issuer"


def test_a_token_without_sub_is_refused() -> None:
    assert reason_of(hs256(), bearer(hs_token(claims(sub=None)))) == "token has no 'sub' claim"


def test_a_token_without_exp_is_refused_by_default() -> None:
    assert reason_of(hs256(), bearer(hs_token(claims(exp=None)))) == "token has no 'exp' claim"


@pytest.mark.parametrize("sub", [123, ["alice"], {"id": "alice"}, True])
def test_a_token_whose_sub_is_not_a_string_is_refused(sub: object) -> None:
    token = by_hand({"alg": "HS256", "typ": "JWT"}, claims(sub=sub), SECRET.encode())
    assert reason_of(hs256(), bearer(token)) == "token 'sub' claim is not a string"


@pytest.mark.parametrize("sub", ["a:b", "x" * 200, "élise", " alice"])
def test_a_token_whose_sub_is_not_a_valid_user_id_is_refused(sub: str) -> None:
    reason = reason_of(hs256(), bearer(hs_token(claims(sub=sub))))
    assert reason.startswith("token 'sub' claim is not a valid user id: ")


@pytest.mark.parametrize(("leeway", "accepted"), [(10.0, True), (0.0, False)])
def test_leeway_lets_a_token_expired_five_seconds_ago_pass(leeway: float, accepted: bool) -> None:
    authenticator = hs256(leeway=leeway)
    headers = bearer(hs_token(claims(exp=now() - 5)))
    if accepted:
        assert authenticator.authenticate(headers, NO_QUERY) == "alice"
    else:
        assert reason_of(authenticator, headers) == "token expired"


@given(st.text(max_size=300))
def test_any_text_as_a_bearer_token_is_an_auth_error_and_nothing_else(text: str) -> None:
    with pytest.raises(AuthError) as caught:
        HYPOTHESIS_AUTHENTICATOR.authenticate(bearer(text), {"token": text})
    if len(text.strip()) > 16:
        assert text.strip() not in str(caught.value)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_any_header_and_payload_segments_are_an_auth_error_and_nothing_else(
    header: bytes, payload: bytes
) -> None:
    token = f"{b64(header)}.{b64(payload)}.{b64(b'signature')}"
    with pytest.raises(AuthError):
        HYPOTHESIS_AUTHENTICATOR.authenticate(bearer(token), NO_QUERY)


# --- start-up checks --------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"WSS_JWT_SECRET": ""}])
def test_a_missing_hs256_secret_is_a_config_error_at_secret_env(env: dict[str, str]) -> None:
    issues = config_issues(AuthConfig(), "production", env)
    message = "environment variable WSS_JWT_SECRET is not set"
    assert issues == [ConfigIssue("auth.secret_env", message)]


def test_the_secret_is_read_from_the_variable_secret_env_names() -> None:
    authenticator = hs256(env={"MY_SECRET": SECRET}, secret_env="MY_SECRET")
    assert authenticator.authenticate(bearer(hs_token()), NO_QUERY) == "alice"


def test_a_short_hs256_secret_is_a_config_error_that_does_not_show_it() -> None:
    secret = "short-secret-31-bytes-long-xxxx"
    [issue] = config_issues(AuthConfig(), "staging", {"WSS_JWT_SECRET": secret})
    assert issue.path == "auth.secret_env"
    assert "31 bytes" in issue.message
    assert secret not in issue.message


def test_a_pem_key_as_hs256_secret_is_a_config_error(rsa_keys: RsaKeys) -> None:
    [issue] = config_issues(
        AuthConfig(), "production", {"WSS_JWT_SECRET": rsa_keys.public_pem.decode()}
    )
    assert issue.path == "auth.secret_env"


def test_an_empty_secret_env_is_a_config_error_for_hs256() -> None:
    [issue] = config_issues(AuthConfig(secret_env=""), "production", ENV)
    assert issue.path == "auth.secret_env"


def test_the_secret_does_not_appear_in_the_authenticators_repr() -> None:
    assert SECRET not in repr(hs256())


def test_a_secret_env_with_the_reserved_prefix_is_a_config_error() -> None:
    issues = {i.path for i in config_issues_of({"auth": {"secret_env": "WS_SUPERVISOR_JWT"}})}
    assert issues == {"auth.secret_env"}


def test_a_negative_leeway_is_a_config_error() -> None:
    assert {i.path for i in config_issues_of({"auth": {"leeway": -1.0}})} == {"auth.leeway"}


@pytest.mark.parametrize("file", ["", "does/not/exist.pem"])
def test_a_missing_public_key_file_is_a_config_error_at_public_key_file(file: str) -> None:
    [issue] = config_issues(AuthConfig(jwt_algorithm="RS256", public_key_file=file), "ci", {})
    assert issue.path == "auth.public_key_file"


def test_a_file_that_is_not_a_pem_public_key_is_a_config_error(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for name, content in [("junk.pem", b"not a key"), ("private.pem", private_pem)]:
        (tmp_path / name).write_bytes(content)
        auth = AuthConfig(jwt_algorithm="RS256", public_key_file=str(tmp_path / name))
        [issue] = config_issues(auth, "production", {})
        assert issue == ConfigIssue(
            "auth.public_key_file", f"{tmp_path / name} does not hold a PEM public key"
        )


def test_a_public_key_that_is_not_rsa_is_a_config_error(tmp_path: Path) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    auth = AuthConfig(jwt_algorithm="RS256", public_key_file=str(tmp_path / "ec.pem"))
    [issue] = config_issues(auth, "production", {})
    assert issue.path == "auth.public_key_file"
    assert "not an RSA public key" in issue.message


def test_an_rsa_key_shorter_than_2048_bits_is_a_config_error(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = write_public_key(tmp_path / "small.pem", private)
    auth = AuthConfig(jwt_algorithm="RS256", public_key_file=str(keys.public_file))
    [issue] = config_issues(auth, "production", {})
    assert issue.path == "auth.public_key_file"
    assert "1024 bits" in issue.message


def test_several_problems_are_reported_at_once() -> None:
    issues = config_issues(AuthConfig(mode="query"), "production", {})
    assert [i.path for i in issues] == ["auth.mode", "auth.secret_env"]
    rs_issues = config_issues(AuthConfig(mode="query", jwt_algorithm="RS256"), "staging", {})
    assert [i.path for i in rs_issues] == ["auth.mode", "auth.public_key_file"]


def test_an_authenticator_in_jwt_mode_cannot_be_built_without_a_key() -> None:
    with pytest.raises(ValueError, match="from_config"):
        Authenticator(AuthConfig())


def test_configured_required_claims_must_all_be_present() -> None:
    authenticator = hs256(required_claims="iat, jti")
    assert authenticator.authenticate(bearer(hs_token(claims(iat=now(), jti="j1"))), NO_QUERY)
    assert reason_of(authenticator, bearer(hs_token(claims(iat=now())))) == (
        "token has no 'jti' claim"
    )


def test_a_malformed_required_claims_list_is_a_config_error_at_its_path() -> None:
    issues = config_issues_of({"auth": {"required_claims": "iat,,J-T-I"}})
    assert [issue.path for issue in issues] == ["auth.required_claims"]
