"""The one module that names pykka's private parts; it checks pykka's version on import.

The dispatcher runtime runs pykka actors on a few shared threads rather than
one thread each. To do that it relies on parts of pykka that are not its
public API: it copies the body of ``Actor._actor_loop_running`` (one envelope
at a time), implements the hooks a new actor type implements
(``_create_actor_inbox``, ``_create_future``, ``_start_actor_loop``), calls
``_actor_loop_setup``, ``_handle_receive``, ``_handle_failure`` and ``_stop``,
sends pykka's own stop message (``messages._ActorStop``) in pykka's own
``_envelope.Envelope``, and puts an index in place of
``ActorRegistry._actor_refs``.

Those parts were read in pykka :data:`SERIES`; importing this module with any
other series raises ImportError. :data:`FINGERPRINTS` holds a hash of the
source of every part relied on, as it was read, and :func:`changed` names the
ones that differ in the installed pykka (a test asserts there are none), so
that a patch release that changes one of them is noticed too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
from typing import Any

from pykka._envelope import Envelope
from pykka.messages import _ActorStop as ActorStop

__all__ = [
    "FINGERPRINTS",
    "SERIES",
    "ActorStop",
    "Envelope",
    "changed",
    "check_series",
    "fingerprint",
    "installed_version",
]

SERIES = (4, 5)
"""The pykka release series (major, minor) whose private parts were read."""

FINGERPRINTS: dict[str, str] = {
    "pykka._actor.Actor.__init__": "bf2a25172af23b0c",
    "pykka._actor.Actor.start": "12512ec1f277436c",
    "pykka._actor.Actor._stop": "1d3216e9851326ac",
    "pykka._actor.Actor._actor_loop_setup": "2687bc3726569305",
    "pykka._actor.Actor._actor_loop_running": "4109f316d2be434e",
    "pykka._actor.Actor._actor_loop_teardown": "1b35ca263372af74",
    "pykka._actor.Actor._handle_failure": "e0d63e0c57e4cbca",
    "pykka._actor.Actor._handle_receive": "2851d2852985bbb5",
    "pykka._envelope.Envelope": "8359815d99fbc784",
    "pykka._registry.ActorRegistry.get_all": "572a4c6d51c70a24",
    "pykka._registry.ActorRegistry.register": "9d29b0f0761d1bf0",
    "pykka._registry.ActorRegistry.unregister": "9c2e36de77cfea32",
    "pykka._registry.ActorRegistry.stop_all": "cdd4f3a2c01b20c2",
    "pykka.messages._ActorStop": "8267c9e6e3e0424d",
}
"""sha256 (first 16 hex digits) of the source of each part relied on, as read in :data:`SERIES`."""


def check_series(version: str) -> None:
    """ImportError unless ``version`` is in :data:`SERIES`."""
    major, minor, *_ = [*version.split("."), "0", "0"]
    if (major, minor) != tuple(str(n) for n in SERIES):
        wanted = ".".join(str(n) for n in SERIES)
        raise ImportError(
            f"ws-supervisor's actor runtime needs pykka {wanted}.x, whose private parts it "
            f"relies on (actors/_runtime/pykka_fence.py); pykka {version} is installed"
        )


def installed_version() -> str:
    """The version of the installed pykka distribution."""
    return importlib.metadata.version("pykka")


def _resolve(dotted: str) -> Any:
    module_name, *attributes = dotted.split(".")
    module = importlib.import_module(module_name)
    obj: Any = module
    for attribute in attributes:
        if inspect.ismodule(obj) and not hasattr(obj, attribute):
            obj = importlib.import_module(f"{obj.__name__}.{attribute}")
        else:
            obj = getattr(obj, attribute)
    return obj


def fingerprint(dotted: str) -> str:
    """The hash of the installed source of the part named ``dotted``."""
    source = inspect.getsource(_resolve(dotted))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def changed() -> list[str]:
    """The parts relied on whose installed source differs from :data:`FINGERPRINTS`."""
    return [name for name, digest in FINGERPRINTS.items() if fingerprint(name) != digest]


check_series(installed_version())
