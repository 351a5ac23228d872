"""The ``ws-supervisor`` command; the only place that exits the process."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from supervisor.config import Config
from supervisor.configload import PROFILES, check_config_file, load_config, load_profile
from supervisor.errors import ConfigError
from supervisor.logs import configure_logging
from supervisor.metrics import MetricsObserver
from supervisor.tree import SupervisionTree

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ws-supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the supervision tree")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="a TOML config file")
    source.add_argument("--profile", choices=PROFILES, help="a bundled profile")
    serve.add_argument(
        "--state-every",
        type=float,
        default=5.0,
        help="print the tree's state every N seconds (0: never)",
    )
    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)
    return parser


def _load(args: argparse.Namespace) -> Config:
    if args.profile:
        return load_profile(args.profile)
    return load_config(args.config)


def _serve(args: argparse.Namespace) -> int:
    config = _load(args)
    configure_logging(config.logging)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SupervisionTree(config, observer=MetricsObserver()) as tree:
        print(json.dumps(tree.snapshot()), flush=True)
        while not stop.wait(args.state_every or None):
            print(json.dumps(tree.snapshot()), flush=True)
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    issues = check_config_file(args.file)
    for issue in issues:
        print(f"{args.file}: {issue}", file=sys.stderr)
    if not issues:
        print(f"{args.file}: ok")
    return EXIT_USAGE if issues else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _check_config(args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
