"""The page's files as the package ships them, and the headers that lock the page down."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from supervisor.admin.page import PAGE_FILES, PAGE_HEADERS, load_page

UI = Path(__file__).resolve().parents[3] / "supervisor" / "admin" / "ui"


def test_every_path_serves_its_file_from_the_package_with_its_media_type() -> None:
    page = load_page()
    assert set(page) == set(PAGE_FILES)
    for path, (name, content_type) in PAGE_FILES.items():
        assert page[path].body == (UI / name).read_bytes(), path
        assert page[path].content_type == content_type
    assert page["/ui"].body == page["/ui/"].body
    assert page["/ui"].content_type.startswith("text/html")
    assert page["/ui/ui.js"].content_type.startswith("text/javascript")


def test_every_file_in_the_folder_is_served() -> None:
    assert {p.name for p in UI.iterdir()} == {name for name, _ in PAGE_FILES.values()}


class _Links(HTMLParser):
    """Every src and href of a document, and whether it has an inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        found = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if "style" in found or any(k.startswith("on") for k in found):
            self.inline.append(f"{tag} {found}")

    def handle_data(self, data: str) -> None:
        if self._tag in ("script", "style") and data.strip():
            self.inline.append(f"{self._tag}: {data[:40]}")

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""


def test_the_html_links_only_files_the_listener_serves_and_has_nothing_inline() -> None:
    links = _Links()
    links.feed((UI / "index.html").read_text(encoding="utf-8"))
    assert sorted(links.links) == ["/ui/favicon.svg", "/ui/ui.css", "/ui/ui.js"]
    assert set(links.links) <= set(PAGE_FILES)
    assert links.inline == []  # the policy would refuse it: script-src and style-src 'self'


def test_no_file_of_the_page_names_another_host() -> None:
    for path in UI.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = re.findall(r"(?:https?:)?//[\w.-]+", text)
        assert [u for u in urls if u != "http://www.w3.org"] == [], path.name  # the svg xmlns


def test_the_script_sends_the_token_as_a_bearer_header_and_never_in_a_query() -> None:
    script = (UI / "ui.js").read_text(encoding="utf-8")
    assert 'headers.Authorization = "Bearer " + token' in script
    assert "?token" not in script and ".innerHTML" not in script  # data only as text
    assert 'credentials: "omit"' in script


def test_the_policy_allows_the_page_its_own_origin_and_nothing_else() -> None:
    headers = dict(PAGE_HEADERS)
    policy = dict(
        directive.split(" ", 1) for directive in headers["Content-Security-Policy"].split("; ")
    )
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self'",
        "img-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
