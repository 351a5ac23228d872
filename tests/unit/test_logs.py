"""Log lines: one per event, plain or JSON."""

from __future__ import annotations

import json
import logging
import sys

from supervisor.logs import JsonFormatter


def test_a_json_log_line_is_one_object_with_level_logger_and_message() -> None:
    record = logging.LogRecord(
        "actors.root",
        logging.WARNING,
        __file__,
        1,
        "level %s -> %s user_id=%s",
        ("ok", "warning", "alice"),
        None,
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert (entry["level"], entry["logger"]) == ("WARNING", "actors.root")
    assert entry["message"] == "level ok -> warning user_id=alice"


def test_an_exception_is_kept_inside_the_one_json_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: bad" in json.loads(line)["exception"]
