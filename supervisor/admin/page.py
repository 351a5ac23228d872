"""The live page of the supervision tree (``GET /ui``): a static shell that holds no data.

The page is three files and an icon shipped in the wheel (``supervisor/admin/ui/``):
plain HTML, CSS and one script, no build step, no request to any other host. The
admin listener serves them without the admin token, because they hold no data; the
script then reads ``GET /debug/state`` and ``GET /readyz`` itself, sending the token
as ``Authorization: Bearer`` (taken from the URL fragment ``#token=…``, which no
browser sends to a server, or typed into the page), and those routes keep requiring
it. A strict Content-Security-Policy lets the page run only its own script and talk
only to its own origin.

Pure: :func:`load_page` reads the files once (on the thread that builds the admin
listener, at start-up); nothing here does I/O afterwards.
"""

from __future__ import annotations

import importlib.resources

import attrs

__all__ = ["PAGE_FILES", "PAGE_HEADERS", "Asset", "load_page"]

# Each path the page is served at: the file it is, and its media type. Route lookup
# is exact (no normalisation), so only these paths are served without the token.
PAGE_FILES: dict[str, tuple[str, str]] = {
    "/ui": ("index.html", "text/html; charset=utf-8"),
    "/ui/": ("index.html", "text/html; charset=utf-8"),
    "/ui/ui.css": ("ui.css", "text/css; charset=utf-8"),
    "/ui/ui.js": ("ui.js", "text/javascript; charset=utf-8"),
    "/ui/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

# The headers of every answer of the page: its own script and origin only, no
# sniffing, no referrer, never in a frame, no other origin's window or reads.
PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


@attrs.frozen
class Asset:
    """One file of the page: its bytes and its ``Content-Type``."""

    body: bytes
    content_type: str


def load_page() -> dict[str, Asset]:
    """Every path of :data:`PAGE_FILES` with its file, read from the installed package."""
    folder = importlib.resources.files("supervisor.admin") / "ui"
    read: dict[str, bytes] = {}
    assets: dict[str, Asset] = {}
    for path, (name, content_type) in PAGE_FILES.items():
        if name not in read:
            read[name] = (folder / name).read_bytes()
        assets[path] = Asset(read[name], content_type)
    return assets
