"""Log lines: one per event, plain or JSON, written by their own thread."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO, cast

import pytest

from supervisor.config.schema import LoggingConfig
from supervisor.logs import JsonFormatter, LogWriter, configure_logging


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


class Stream:
    """A stream that notes which thread writes, and can be held blocked like a full pipe."""

    def __init__(self, blocked: bool = False) -> None:
        self.lines: list[str] = []
        self.writers: set[str] = set()
        self.writes = 0
        self.entered = threading.Event()
        self.open = threading.Event()
        if not blocked:
            self.open.set()

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.open.wait(10), "the stream was never released"
        self.writers.add(threading.current_thread().name)
        self.writes += 1
        self.lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("actors.root", logging.INFO, __file__, 1, message, None, None)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back with its handlers, level and record options as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    options = (logging._srcfile, logging.logThreads, logging.logProcesses)
    multiprocessing = logging.logMultiprocessing
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging._srcfile, logging.logThreads, logging.logProcesses = options
    logging.logMultiprocessing = multiprocessing


def wait_for_lines(stream: Stream, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(stream.lines) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(stream.lines) >= count, stream.lines


@pytest.mark.timeout(10)
def test_log_lines_are_written_by_the_writer_thread_never_by_the_thread_that_logs(
    root_logger: logging.Logger,
) -> None:
    stream = Stream()
    writer = configure_logging(LoggingConfig(level="INFO"), cast(TextIO, stream))
    logging.getLogger("actors.user.admission").info("admitted user_id=%s", "alice")
    logging.getLogger("actors.user.admission").debug("not at INFO")
    writer.stop()
    assert stream.writers == {"ws-supervisor-log"}
    assert len(stream.lines) == 1
    assert stream.lines[0].endswith(" INFO actors.user.admission: admitted user_id=alice")
    assert not writer._thread.is_alive()


@pytest.mark.timeout(10)
def test_a_blocked_stream_never_blocks_the_logger_lines_past_the_limit_are_counted() -> None:
    stream = Stream(blocked=True)
    writer = LogWriter(cast(TextIO, stream), logging.Formatter("%(message)s"), limit=3).start()
    writer.put(record("first"))
    assert stream.entered.wait(5)  # the writer holds "first", blocked in write
    for n in range(10):
        writer.put(record(f"line {n}"))  # three wait, seven are dropped; none blocks
    assert writer.dropped == 7
    stream.open.set()
    wait_for_lines(stream, 4)
    assert stream.writes == 2  # the three that waited went out in one write
    writer.put(record("after"))
    writer.stop()
    assert stream.lines == [
        "first",
        "line 0",
        "line 1",
        "line 2",
        "7 log lines dropped: stderr was not draining",
        "after",
    ]


@pytest.mark.timeout(10)
def test_lines_logged_within_the_gathering_time_go_out_in_one_wake_up_and_one_write() -> None:
    stream = Stream()
    writer = LogWriter(cast(TextIO, stream), logging.Formatter("%(message)s")).start()
    writer.put(record("first"))  # wakes the writer, which then waits GATHER_SECONDS
    for n in range(20):
        writer.put(record(f"line {n}"))  # microseconds later: gathered with the first
    wait_for_lines(stream, 21)
    assert stream.writes == 1
    writer.put(record("later"))
    writer.stop()  # writes what waits
    assert stream.lines[-1] == "later" and stream.writes == 2


@pytest.mark.timeout(10)
def test_stopping_with_the_stream_blocked_gives_up_after_its_timeout() -> None:
    stream = Stream(blocked=True)
    writer = LogWriter(cast(TextIO, stream), logging.Formatter("%(message)s"), limit=1).start()
    writer.put(record("held"))
    assert stream.entered.wait(5)
    writer.put(record("waiting"))
    started = time.monotonic()
    writer.stop(timeout=0.2)
    assert time.monotonic() - started < 2  # the bound is the feature: exit is not held up
    stream.open.set()
    writer.stop()
    assert stream.lines == ["held", "waiting"]
    assert not writer._thread.is_alive()


@pytest.mark.timeout(10)
def test_an_exception_logged_as_json_keeps_its_traceback_in_the_one_line(
    root_logger: logging.Logger,
) -> None:
    stream = Stream()
    writer = configure_logging(LoggingConfig(level="INFO", json=True), cast(TextIO, stream))
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("actors.user.keeper").exception("port close failed websocket_id=%s", "w1")
    writer.stop()
    assert len(stream.lines) == 1
    entry = json.loads(stream.lines[0])
    assert entry["message"] == "port close failed websocket_id=w1"
    assert "ValueError: bad" in entry["exception"]


@pytest.mark.timeout(10)
def test_a_message_whose_arguments_do_not_fit_is_reported_not_raised(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = Stream()
    writer = configure_logging(LoggingConfig(level="INFO"), cast(TextIO, stream))
    logging.getLogger("x").info("two %s %s", "one")  # noqa: PLE1206 - on purpose
    logging.getLogger("x").info("fine")
    writer.stop()
    assert len(stream.lines) == 1 and stream.lines[0].endswith("x: fine")
    assert "not enough arguments" in capsys.readouterr().err


@pytest.mark.timeout(10)
def test_lines_formatted_elsewhere_are_written_as_they_are_among_the_others() -> None:
    stream = Stream()
    writer = LogWriter(cast(TextIO, stream), JsonFormatter()).start()
    writer.put_text("2026-12-07 01:00:00,000 INFO actors.user: a worker's line\nand its next")
    writer.put(record("the master's own"))
    writer.stop()
    assert stream.lines[:2] == [
        "2026-12-07 01:00:00,000 INFO actors.user: a worker's line",
        "and its next",
    ]
    assert json.loads(stream.lines[2])["message"] == "the master's own"


class Recorded(logging.Handler):
    """Keeps the records it is given, as they were logged."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.timeout(10)
def test_a_plain_line_reads_as_the_standard_formatter_writes_it_without_gathering_the_caller(
    root_logger: logging.Logger,
) -> None:
    stream = Stream()
    writer = configure_logging(LoggingConfig(level="INFO"), cast(TextIO, stream))
    seen = Recorded()
    root_logger.addHandler(seen)
    for _ in range(3):  # two lines may share a second: its text is made once
        logging.getLogger("supervisor.access").info("closed user_id=%s", "alice")
    writer.stop()
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert stream.lines == [standard.format(record) for record in seen.records]
    assert {(r.lineno, r.thread, r.process) for r in seen.records} == {(0, None, None)}
