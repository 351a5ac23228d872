"""An index for pykka's actor registry: O(1) register and unregister.

pykka 4.5's ``ActorRegistry`` keeps every ref in a list, and unregistering
one scans it twice (``in``, then ``remove``), comparing ref after ref: with
10,000 actors that was most of the cost of stopping one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka

__all__ = ["install_ref_index"]


class _RefIndex:
    """pykka's registry list, as an insertion-ordered dict: O(1) register and unregister.

    ``ActorRegistry`` keeps every ref in a list and scans it twice to
    unregister one; with 10,000 actors that is most of the cost of stopping
    one. This holds the same refs in the same order and answers the list
    operations the registry uses (``append``, ``remove``, ``in``, iteration,
    slices). Installed once, when :mod:`actors.dispatch` is imported.
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


def install_ref_index() -> None:
    """Put a :class:`_RefIndex` in place of pykka's registry list (idempotent)."""
    registry: Any = pykka.ActorRegistry
    with registry._actor_refs_lock:
        if isinstance(registry._actor_refs, list):
            registry._actor_refs = _RefIndex(registry._actor_refs)
