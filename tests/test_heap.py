"""Freezing what the gateway built at start out of the garbage collector's passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import heap
from gateway.app import Gateway
from gateway.clock import FakeClock
from gateway.config import load_config_text
from tests.gateway_support import running_gateway

SITE = """
site: {{id: s1, name: Site, gateway_id: gw1}}
state_dir: {state}
devices: []
rules: []
"""


class _Node:
    """A reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """The collector's state is the process's: every test starts and ends unfrozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _dropped_cycle() -> weakref.ref[_Node]:
    node = _Node()
    return weakref.ref(node)  # the cycle is garbage once this returns


def test_frozen_objects_are_left_out_of_collections_until_refrozen() -> None:
    gc.collect()
    node = _Node()
    watch = weakref.ref(node)
    heap.freeze()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert watch() is not None  # frozen: no pass looks at it
    heap.refreeze()
    assert watch() is None  # collected by the pass before freezing again
    assert gc.get_freeze_count() > 0


def test_objects_made_after_freezing_are_collected_as_usual() -> None:
    heap.freeze()
    watch = _dropped_cycle()
    gc.collect()
    assert watch() is None


async def _run(tmp_path: Path, *, freeze_heap: bool) -> tuple[int, int]:
    """Freeze counts once the gateway has started, and after a reload of its config."""
    config = load_config_text(SITE.format(state=tmp_path / "state"))
    gateway = Gateway(config, clock=FakeClock(), freeze_heap=freeze_heap)
    async with running_gateway(gateway):
        at_start = gc.get_freeze_count()
        assert await gateway.reload(config)
        return at_start, gc.get_freeze_count()


async def test_the_gateway_freezes_once_started_and_again_after_a_reload(
        tmp_path: Path) -> None:
    at_start, after_reload = await _run(tmp_path, freeze_heap=True)
    assert at_start > 0
    assert after_reload > 0


async def test_a_reload_collects_the_garbage_frozen_at_start(tmp_path: Path) -> None:
    config = load_config_text(SITE.format(state=tmp_path / "state"))
    gateway = Gateway(config, clock=FakeClock(), freeze_heap=True)
    node = _Node()
    watch = weakref.ref(node)
    async with running_gateway(gateway):
        del node
        gc.collect()
        assert watch() is not None  # frozen at start
        assert await gateway.reload(config)
        assert watch() is None


async def test_an_embedded_gateway_leaves_the_collector_alone(tmp_path: Path) -> None:
    assert await _run(tmp_path, freeze_heap=False) == (0, 0)
