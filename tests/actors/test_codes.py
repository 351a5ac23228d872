"""The close codes: one reason each, every one documented in the README's table."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from actors.codes import ServerCloseCode

README = Path(__file__).resolve().parents[2] / "README.md"

RFC_6455_NOT_TO_BE_SENT = {1004, 1005, 1006, 1015}
"""Reserved, or meant only to report a close that had no close frame."""


def readme_close_codes() -> dict[int, str]:
    """The rows of the README's "Close codes" table: code to meaning."""
    section = README.read_text().split("## Close codes", 1)[1].split("\n## ", 1)[0]
    return {
        int(code): meaning.strip()
        for code, meaning in re.findall(r"^\| (\d{4}) \| (.+?) \|$", section, re.MULTILINE)
    }


def test_the_readme_table_lists_exactly_the_codes_the_server_sends() -> None:
    assert sorted(readme_close_codes()) == sorted(int(code) for code in ServerCloseCode)


def test_no_two_names_share_a_code() -> None:
    assert len(ServerCloseCode.__members__) == len(list(ServerCloseCode))


def test_every_code_may_be_sent_by_a_server_under_rfc_6455() -> None:
    for code in ServerCloseCode:
        registered = 1000 <= code <= 1015 and code not in RFC_6455_NOT_TO_BE_SENT
        private = 4000 <= code <= 4999
        assert registered or private, code


def test_every_code_has_a_docstring_of_its_own() -> None:
    body = ast.parse(inspect.getsource(ServerCloseCode)).body[0]
    assert isinstance(body, ast.ClassDef)
    documented = {
        statement.targets[0].id
        for statement, following in zip(body.body, body.body[1:], strict=False)
        if isinstance(statement, ast.Assign)
        and isinstance(statement.targets[0], ast.Name)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
        and isinstance(following.value.value, str)
        and following.value.value.strip()
    }
    assert documented == set(ServerCloseCode.__members__)
