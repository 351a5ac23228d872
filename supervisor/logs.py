"""Logging: one line per event, plain or JSON lines, set up once by the CLI.

Every line is written to stderr by a thread of its own (:class:`LogWriter`),
never by the thread that logs: a supervisor's turn that runs on the event
loop logs there, and stderr is often a pipe (journald, a container runtime)
that may stop draining. A blocked stderr then holds up only the writer;
past :data:`QUEUE_LIMIT` waiting lines, new ones are dropped and counted,
and a line says how many once stderr drains again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import TextIO

from supervisor.config.schema import LoggingConfig

__all__ = ["GATHER_SECONDS", "QUEUE_LIMIT", "JsonFormatter", "LogWriter", "configure_logging"]

_PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_TRACEBACKS = logging.Formatter()  # formats an exception as every formatter here does

QUEUE_LIMIT = 10_000
"""Log lines that may wait for stderr before new ones are dropped."""

GATHER_SECONDS = 0.05
"""How long the writer lets lines gather after the first of a batch before it writes them.

One wake-up and one write for every line logged meanwhile, instead of a
thread switch (and a GIL hand-off from the event loop) per line: under
connection churn that was most of the cost of a log line. A line is
written at most this much later; :meth:`LogWriter.stop` still writes what
waits.
"""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, separators=(",", ":"))


class _PlainFormatter(logging.Formatter):
    """The plain line's formatter: its time's text made once a second, not once a line."""

    def __init__(self) -> None:
        super().__init__(_PLAIN)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # only the writer thread formats: nothing to lock
            self._second, self._text = (
                second,
                time.strftime(self.default_time_format, self.converter(second)),
            )
        return f"{self._text},{int(record.msecs):03d}"


class _Enqueue(logging.handlers.QueueHandler):
    """The handler on the root logger: hands each record to the writer, never blocks.

    The standard library's queue handler, with two changes. Runs on
    whichever thread logs. The record is resolved first (message and
    traceback made text, kept apart so that a JSON line still has its
    ``exception``), so that nothing it refers to is read later on another
    thread; then the writer takes it or counts it dropped.
    """

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(writer._queue)
        self._writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        resolved = type(record).__new__(type(record))  # copy.copy's copy, without its 3 calls
        resolved.__dict__.update(record.__dict__)
        resolved.msg, resolved.args = record.getMessage(), None
        if record.exc_info:
            resolved.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            resolved.exc_info = None
        return resolved

    def enqueue(self, record: logging.LogRecord) -> None:
        self._writer.put(record)


class LogWriter:
    """Writes log records to ``stream`` on its own daemon thread, ``ws-supervisor-log``.

    :meth:`put` runs on whichever thread logs and never blocks: the first
    line of a batch wakes the writer, which then lets lines gather for
    :data:`GATHER_SECONDS` (puts meanwhile wake no one: a
    ``queue.SimpleQueue`` with no waiter); when ``limit`` records already
    wait, the record is dropped and counted (the count is not locked:
    threads dropping at once may undercount it).
    :meth:`stop` runs on the thread that ends the process: it writes what
    waits, for up to its timeout, and ends the writer thread.
    """

    def __init__(self, stream: TextIO, formatter: logging.Formatter, limit: int = QUEUE_LIMIT):
        self.stream, self.formatter = stream, formatter
        self.dropped = 0  # every record dropped so far
        self._unreported = 0  # dropped since the last notice
        self._limit = limit
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ws-supervisor-log", daemon=True)

    def start(self) -> LogWriter:
        """Start the writer thread."""
        self._thread.start()
        return self

    def put_text(self, text: str) -> None:
        """Queue lines that are formatted already (a worker's, under ``serve --workers``)."""
        self.put(_Text(text))

    def put(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for writing, or drop and count it if the queue is full."""
        if self._queue.qsize() >= self._limit:
            self.dropped += 1
            self._unreported += 1
            return
        if self._unreported:
            self._queue.put(self._notice())
            self._unreported = 0
        self._queue.put(record)

    def stop(self, timeout: float = 2.0) -> None:
        """Write what waits and end the thread; give up after ``timeout`` (stderr blocked)."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)  # never blocks: the queue has no bound of its own
        self._thread.join(timeout)

    def _notice(self) -> logging.LogRecord:
        message = f"{self._unreported} log lines dropped: stderr was not draining"
        return logging.LogRecord(__name__, logging.WARNING, __file__, 0, message, None, None)

    def _run(self) -> None:
        """The writer thread: whatever has queued up, in one write, until the stop marker.

        One write per batch, not per line: a thread that logs on a busy
        CPU gives the GIL back at each write, so per line the writer fell
        behind and dropped lines while stderr was draining. After the first
        line of a batch it waits :data:`GATHER_SECONDS` for more.
        """
        while True:
            batch = [self._queue.get()]
            if batch[0] is not None:
                time.sleep(GATHER_SECONDS)
            with contextlib.suppress(queue.Empty):
                while len(batch) < QUEUE_LIMIT:
                    batch.append(self._queue.get_nowait())
            records = [record for record in batch if record is not None]
            if records:
                self._write(records)
            if len(records) < len(batch):
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        try:
            text = "".join(_format(self.formatter, record) + "\n" for record in records)
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed stderr, a formatter that fails: never the process's end
            self.dropped += len(records)


class _Text(logging.LogRecord):
    """Lines written as they are, not formatted again."""

    def __init__(self, text: str) -> None:
        super().__init__(__name__, logging.INFO, __file__, 0, text, None, None)


def _format(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    return record.msg if isinstance(record, _Text) else formatter.format(record)


def _gather_only_what_lines_show() -> None:
    """No record gathers what neither format shows: the caller, the thread, the process.

    The logging HOWTO's "Optimization": each of those costs every record a
    lookup (the caller's is a walk up the stack), on the thread that logs.
    A line shows its time, level, logger and message, and the exception.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(config: LoggingConfig, stream: TextIO | None = None) -> LogWriter:
    """Send every log line to ``stream`` (stderr) through a started :class:`LogWriter`.

    Records no longer gather what no line shows (the caller, thread and
    process): this is the process's logging, the daemon's.

    The caller stops the writer before the process exits, so that the last
    lines are written.
    """
    formatter = JsonFormatter() if config.json else _PlainFormatter()
    writer = LogWriter(stream or sys.stderr, formatter).start()
    _gather_only_what_lines_show()
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(writer)]
    root.setLevel(config.level)
    return writer
