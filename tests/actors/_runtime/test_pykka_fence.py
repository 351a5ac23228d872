"""The pykka the runtime relies on is the one its private parts were read in."""

from __future__ import annotations

import pykka
import pytest

from actors._runtime import pykka_fence
from actors._runtime.dispatch import Dispatcher
from actors._runtime.pykka_fence import RefIndexScope


def test_the_installed_pykka_is_of_the_series_the_runtime_was_written_for() -> None:
    pykka_fence.check_series(pykka_fence.installed_version())


def test_every_private_part_of_pykka_the_runtime_relies_on_is_unchanged() -> None:
    changed = pykka_fence.changed()
    assert not changed, (
        f"pykka {pykka_fence.installed_version()} changed {', '.join(changed)}: the runtime "
        "(actors/_runtime) copies or calls these; review it against the new source, "
        "then update FINGERPRINTS in actors/_runtime/pykka_fence.py"
    )


@pytest.mark.parametrize("version", ["4.6.0", "5.0.0", "4.4.2", "3.1"])
def test_another_pykka_series_is_refused_with_a_clear_message(version: str) -> None:
    with pytest.raises(ImportError, match=f"needs pykka 4.5.x.*pykka {version} is installed"):
        pykka_fence.check_series(version)


def test_a_patch_release_of_the_series_is_accepted() -> None:
    pykka_fence.check_series("4.5.7")


def test_a_fingerprint_is_of_the_source_so_a_changed_part_is_named() -> None:
    name = "pykka._actor.Actor._handle_receive"
    assert pykka_fence.fingerprint(name) == pykka_fence.FINGERPRINTS[name]
    assert (
        pykka_fence.fingerprint("pykka._actor.Actor.on_receive") != (pykka_fence.FINGERPRINTS[name])
    )


def test_the_registry_index_is_in_place_only_while_a_dispatcher_runs() -> None:
    assert not RefIndexScope.installed()
    first, second = Dispatcher(name="one").start(), Dispatcher(name="two").start()
    try:
        assert RefIndexScope.installed()
        first.stop()
        assert RefIndexScope.installed()  # the second still runs
    finally:
        second.stop()
        first.stop()  # stopping again changes nothing
    assert not RefIndexScope.installed()


def test_a_threaded_pykka_actor_registered_across_the_scope_keeps_its_place() -> None:
    before = pykka.ThreadingActor.start()
    try:
        dispatcher = Dispatcher(name="scoped").start()
        during = pykka.ThreadingActor.start()
        try:
            assert pykka.ActorRegistry.get_all()[-2:] == [before, during]
        finally:
            dispatcher.stop()
        assert pykka.ActorRegistry.get_all()[-2:] == [before, during]
        during.stop(timeout=5)
        assert pykka.ActorRegistry.get_all()[-1:] == [before]
    finally:
        before.stop(timeout=5)
