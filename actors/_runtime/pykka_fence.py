"""The one module that names pykka's private parts; it checks pykka's version on import.

The runtime (:mod:`actors._runtime`) runs pykka actors on a few shared
threads rather than one thread each. pykka's public API has no hook for
that, so the runtime relies on parts of pykka that are private:

- the hooks a new actor type implements (``_create_actor_inbox``,
  ``_create_future``, ``_start_actor_loop``), implemented by
  :class:`FencedActor` to call ``make_inbox`` and ``start_turns``;
- the body of ``Actor._actor_loop_running``, copied as
  :meth:`FencedActor.handle_envelope` (one envelope at a time, with the
  same answers, failure handling and logging), which calls ``receive``
  (``_handle_receive`` by default) so a subclass can route faster, and
  :meth:`FencedActor.handle_told_call`, the same for a call run as a
  turn with no message at all;
- ``_actor_loop_setup``, ``_handle_failure`` and ``_stop``, called from
  :meth:`FencedActor.set_up`, :meth:`FencedActor.handle_told_failure` and
  :meth:`FencedActor.handle_envelope`;
- pykka's own stop message (``messages._ActorStop``) in pykka's own
  ``_envelope.Envelope``;
- ``ActorRegistry._actor_refs``, which :class:`RefIndexScope` replaces by an
  index while any dispatcher runs, and puts back afterwards.

Nothing else in the code base names a private part of pykka. Those parts
were read in pykka :data:`SERIES`; importing this module with any other
series raises ImportError. :data:`FINGERPRINTS` holds a hash of the source
of every part relied on, as it was read, and :func:`changed` names the ones
that differ in the installed pykka (a test asserts there are none), so that
a patch release that changes one of them is noticed too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
from pykka._envelope import Envelope
from pykka.messages import _ActorStop as ActorStop

__all__ = [
    "FINGERPRINTS",
    "SERIES",
    "ActorStop",
    "Envelope",
    "FencedActor",
    "RefIndexScope",
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
    obj: Any = importlib.import_module(module_name)
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

_pykka_log = logging.getLogger("pykka")


class FencedActor(pykka.Actor):
    """A pykka actor whose private hooks are implemented here, and only here.

    A subclass provides :meth:`make_inbox` and :meth:`start_turns`, and runs
    the actor by calling :meth:`set_up` once, then :meth:`handle_envelope`
    for each envelope; it overrides :meth:`receive` to route messages.
    """

    def _create_actor_inbox(self) -> Any:  # type: ignore[override]  # pykka: self._create_...()
        return self.make_inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self.start_turns()

    def make_inbox(self) -> Any:
        """The actor's inbox (called from pykka's ``__init__``, before the subclass's)."""
        raise NotImplementedError

    def start_turns(self) -> None:
        """Begin running the actor (called by ``start()``, once it is registered)."""
        raise NotImplementedError

    def set_up(self) -> None:
        """Run ``on_start``; a failure there is logged and stops the actor, as in pykka."""
        self._actor_loop_setup()

    def receive(self, message: Any) -> Any:
        """Handle one message as pykka does (its stop and proxy calls, then ``on_receive``)."""
        return self._handle_receive(message)

    def handle_told_failure(self) -> None:
        """The exception being handled was raised by a told message: log it, ``on_failure``.

        The actor stops, as pykka stops an actor whose ``tell`` raised.
        """
        self._handle_failure(*sys.exc_info())
        try:
            self.on_failure(*sys.exc_info())
        except Exception:
            self._handle_failure(*sys.exc_info())

    def handle_told_call(
        self, call: Callable[[Any, str, str], None], first: str, second: str
    ) -> None:
        """``call(self, first, second)`` as the body of a told message's turn, without the message.

        A failure is handled as :meth:`handle_envelope` handles one from a
        ``tell`` (logged, ``on_failure``, the actor stops); a BaseException
        stops every actor, as there.
        """
        try:
            call(self, first, second)
        except Exception:
            self.handle_told_failure()
        except BaseException:
            self._stop_everything()

    def handle_told(self, message: Any) -> None:
        """A told message, as :meth:`handle_envelope` handles one with no reply to set."""
        try:
            self.receive(message)
        except Exception:
            self.handle_told_failure()
        except BaseException:
            self._stop_everything()

    def handle_envelope(self, envelope: Envelope[Any]) -> None:
        """One envelope, as the body of pykka 4.5's ``Actor._actor_loop_running``."""
        try:
            response = self.receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                _pykka_log.info(
                    f"Exception returned from {self} to caller:", exc_info=sys.exc_info()
                )
                envelope.reply_to.set_exception()
            else:
                self.handle_told_failure()
        except BaseException:
            self._stop_everything()

    def _stop_everything(self) -> None:
        """A BaseException in a hook: this actor stops, and every actor is told to, as in pykka."""
        _pykka_log.debug(f"{sys.exc_info()[1]!r} in {self}. Stopping all actors.")
        self._stop()
        pykka.ActorRegistry.stop_all(block=False)


class _RefIndex:
    """pykka's registry list, as an insertion-ordered dict: O(1) register and unregister.

    ``ActorRegistry`` keeps every ref in a list and scans it twice to
    unregister one; with 10,000 actors that is most of the cost of stopping
    one. This holds the same refs in the same order and answers the list
    operations the registry uses (``append``, ``remove``, ``in``, iteration,
    slices). Installed by :class:`RefIndexScope` while a dispatcher runs.
    """

    __slots__ = ("_refs",)

    def __init__(self, refs: list[pykka.ActorRef[Any]]) -> None:
        self._refs = {id(ref): ref for ref in refs}

    def append(self, ref: pykka.ActorRef[Any]) -> None:
        self._refs[id(ref)] = ref

    def remove(self, ref: pykka.ActorRef[Any]) -> None:
        if self._refs.get(id(ref)) is not ref:
            raise ValueError("ref not in the registry")
        del self._refs[id(ref)]

    def __contains__(self, ref: object) -> bool:
        return self._refs.get(id(ref)) is ref

    def __iter__(self) -> Iterator[pykka.ActorRef[Any]]:
        return iter(list(self._refs.values()))

    def __getitem__(self, index: slice) -> list[pykka.ActorRef[Any]]:
        return list(self._refs.values())[index]

    def __len__(self) -> int:
        return len(self._refs)


class RefIndexScope:
    """Puts a :class:`_RefIndex` in place of pykka's registry list while held.

    The first :meth:`hold` (a dispatcher starting) installs the index, the
    last :meth:`release` (the last dispatcher stopping) puts back a plain
    list holding the same refs in the same order, so pykka is left as it was
    for every other user in the process.
    """

    _lock = threading.Lock()
    _holders = 0

    @classmethod
    def hold(cls) -> None:
        with cls._lock:
            cls._holders += 1
            if cls._holders == 1:
                cls._swap(lambda refs: _RefIndex(list(refs)))

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            if cls._holders == 0:
                return
            cls._holders -= 1
            if cls._holders == 0:
                cls._swap(list)

    @classmethod
    def installed(cls) -> bool:
        """True while pykka's registry holds its refs in the index."""
        return isinstance(pykka.ActorRegistry._actor_refs, _RefIndex)

    @staticmethod
    def _swap(make: Any) -> None:
        registry: Any = pykka.ActorRegistry
        with registry._actor_refs_lock:
            registry._actor_refs = make(registry._actor_refs)
