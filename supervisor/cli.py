"""The ``ws-supervisor`` command; the only place that exits the process.

Exit status: 0 done, 1 forced exit (a second SIGINT), 2 bad usage or config,
3 the admin endpoint could not be read, 4 a worker of ``serve --workers``
would not start or kept dying.

``ws-supervisor worker`` is not for people: it is how the master of
``serve --workers N`` starts each worker (:mod:`supervisor.workers.seat`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from actors.errors import WsSupervisorError
from supervisor import __version__
from supervisor.config.load import (
    PROFILES,
    check_config_file,
    load_config,
    profile_path,
    profile_text,
)
from supervisor.config.schema import Config
from supervisor.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from supervisor.daemon import Daemon
    from supervisor.workers.master import Master

__all__ = ["Lifecycle", "capture_signals", "main"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FORCED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_WORKER_FAILED = 4


def _workers(text: str) -> int:
    from supervisor.workers.master import worker_count  # noqa: PLC0415 - keep the rest light

    try:
        return worker_count(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ws-supervisor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ws-supervisor {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{serve,dump,check-config,profile}"
    )
    serve = commands.add_parser("serve", help="run the daemon")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="a TOML config file")
    source.add_argument("--profile", choices=PROFILES, help="a bundled profile")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="worker processes serving the one port (default 1: a single process; "
        "auto: one per core)",
    )
    worker = commands.add_parser("worker")  # started by serve --workers, not by people
    worker.add_argument("--channel-fd", type=int, required=True)
    dump = commands.add_parser("dump", help="print the actor tree of a running daemon")
    dump.add_argument("--admin", default="http://127.0.0.1:8766", help="the admin listener URL")
    dump.add_argument("--token-env", default="", help="env var holding the admin bearer token")
    dump.add_argument("--json", action="store_true", help="print the raw JSON")
    dump.add_argument(
        "--cluster", action="store_true", help="every node's slots, from the Redis ledger"
    )
    dump.add_argument("--user", help="with --cluster: only this user's slots")
    check = commands.add_parser(
        "check-config",
        help="check what serve would run with: the file, WS_SUPERVISOR_* overrides, secrets",
    )
    check.add_argument("file", type=Path)
    check.add_argument(
        "--file-only",
        action="store_true",
        help="check the file alone: no environment overrides, no secrets",
    )
    profile = commands.add_parser(
        "profile", help="print a bundled profile, to start your own config file from"
    )
    profile.add_argument("name", choices=PROFILES)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from supervisor import gc_tuning  # noqa: PLC0415 - keep dump/check light
    from supervisor.daemon import Daemon  # noqa: PLC0415
    from supervisor.logs import configure_logging  # noqa: PLC0415

    path = profile_path(args.profile) if args.profile else args.config
    config = load_config(path)
    writer = configure_logging(config.logging)
    try:
        if args.workers > 1:
            return _run_master(_master(config, args.workers, path, writer.put_text))
        return _run_daemon(Daemon(config, config_path=path), gc_tuning.tune())
    finally:
        writer.stop()  # the last lines (the drain, a forced exit) reach stderr


def _master(
    config: Config, workers: int, path: Path | None, log_text: Callable[[str], None]
) -> Master:
    from supervisor.daemon import read_environment  # noqa: PLC0415
    from supervisor.workers.master import Master  # noqa: PLC0415

    if config.server.trusted_proxies.strip():  # the master reads request heads as they come
        problem = (
            "serve --workers N reads no PROXY header and no forwarding header: behind a "
            "balancer, run one process per port (--workers 1), each a node of the cluster"
        )
        raise ConfigError([ConfigIssue("server.trusted_proxies", problem)])
    environment = read_environment(config, os.environ)  # refused here, not in N workers
    return Master(
        config,
        workers,
        authenticator=environment.authenticator,
        admin_token=environment.admin_token,
        config_path=path,
        log_text=log_text,
    )


class Lifecycle(Protocol):
    """What the process's signals ask of what it runs (the daemon, or the master)."""

    def request_stop(self) -> None: ...

    def force_exit(self) -> None: ...

    async def reload(self) -> bool: ...

    async def dump(self) -> None: ...


def capture_signals(process: Lifecycle) -> None:
    """Loop: the one place the process's signals are captured.

    SIGTERM and SIGINT drain; a second SIGINT forces the exit (after
    ``request_stop``, the caller's ``serve`` raises ``ForcedExit``); SIGHUP
    reloads the config file; SIGUSR1 writes the state dump.
    """
    loop = asyncio.get_running_loop()
    interrupts = itertools.count(1)
    running: set[asyncio.Task[object]] = set()  # held until done: a task is not collected

    def interrupt() -> None:
        if next(interrupts) > 1:
            process.force_exit()
        process.request_stop()

    def soon(work: Callable[[], Coroutine[object, object, object]]) -> Callable[[], None]:
        def start() -> None:
            task = loop.create_task(work())
            running.add(task)
            task.add_done_callback(running.discard)

        return start

    loop.add_signal_handler(signal.SIGTERM, process.request_stop)
    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGHUP, soon(process.reload))
    loop.add_signal_handler(signal.SIGUSR1, soon(process.dump))


def _run_master(master: Master) -> int:
    from supervisor.errors import ForcedExit, WorkerFailed  # noqa: PLC0415

    async def run() -> None:
        capture_signals(master)
        await master.serve()

    try:
        asyncio.run(run())
    except ForcedExit:
        return EXIT_FORCED
    except WorkerFailed as error:
        print(f"ws-supervisor serve: {error}", file=sys.stderr)
        return EXIT_WORKER_FAILED
    except OSError as error:
        print(f"ws-supervisor serve: cannot start: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    """A worker of ``serve --workers``: the daemon, fed by the master (its setup first)."""
    from supervisor import gc_tuning  # noqa: PLC0415
    from supervisor.daemon import Daemon  # noqa: PLC0415
    from supervisor.logs import configure_logging  # noqa: PLC0415
    from supervisor.workers.seat import WorkerSeat  # noqa: PLC0415

    try:
        seat = WorkerSeat.join(args.channel_fd)
    except (OSError, ValueError) as error:
        print(f"ws-supervisor worker: no setup from the master: {error}", file=sys.stderr)
        return EXIT_USAGE
    config = seat.config
    writer = configure_logging(config.logging)
    try:
        daemon = Daemon(config, config_path=seat.config_path, seat=seat)
        return _run_daemon(daemon, gc_tuning.tune())
    finally:
        writer.stop()


def _run_daemon(daemon: Daemon, frozen: int) -> int:
    from supervisor.errors import ForcedExit  # noqa: PLC0415

    log.info("gc: thresholds %s, %d startup objects frozen", gc.get_threshold(), frozen)

    async def run() -> None:
        capture_signals(daemon)
        await daemon.serve()

    try:
        asyncio.run(run())
    except ForcedExit:
        return EXIT_FORCED
    except OSError as error:  # a listener that cannot bind: the port is taken, say so
        print(f"ws-supervisor serve: cannot start: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _dump(args: argparse.Namespace) -> int:
    from supervisor.admin import dump  # noqa: PLC0415

    if args.user is not None and not args.cluster:
        print("ws-supervisor dump: --user needs --cluster", file=sys.stderr)
        return EXIT_USAGE
    token = os.environ.get(args.token_env) if args.token_env else None
    fetch = dump.fetch_cluster if args.cluster else dump.fetch_state
    try:
        state = fetch(args.admin, token)
    except WsSupervisorError as error:
        print(f"ws-supervisor dump: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(state, indent=2))
    elif args.cluster:
        print(dump.render_cluster(state, args.user))
    else:
        print(dump.render_state(state, color=sys.stdout.isatty()))
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    issues = check_config_file(args.file) if args.file_only else _check_as_served(args.file)
    for issue in issues:
        print(f"{args.file}: {issue}", file=sys.stderr)
    if not issues:
        print(f"{args.file}: ok" + (" (the file alone)" if args.file_only else ""))
    return EXIT_USAGE if issues else EXIT_OK


def _check_as_served(path: Path) -> list[ConfigIssue]:
    """The file with the environment's overrides, then the secrets and app it names."""
    from supervisor.daemon import environment_issues  # noqa: PLC0415 - keep the rest light

    try:
        config = load_config(path)
    except ConfigError as error:
        return list(error.issues)
    return environment_issues(config, os.environ)


def _profile(args: argparse.Namespace) -> int:
    sys.stdout.write(profile_text(args.name))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    commands = {
        "serve": _serve,
        "dump": _dump,
        "check-config": _check_config,
        "profile": _profile,
        "worker": _worker,
    }
    try:
        return commands[args.command](args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
