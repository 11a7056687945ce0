"""The service freezes its long-lived heap (decision/heap.py): the catalog in
force is out of the collector's sight, a reload frees the old catalog and
freezes the new one, and the collector's passes are counted."""

from __future__ import annotations

import gc
import weakref

from decision import heap
from decision.catalog import Catalog


def _tracked_catalogs() -> list[int]:
    """ids of the Catalog objects the collector walks (frozen ones excluded)."""
    return [id(o) for o in gc.get_objects() if type(o) is Catalog]


def _all_catalogs() -> list[int]:
    gc.unfreeze()
    try:
        return [id(o) for o in gc.get_objects() if type(o) is Catalog]
    finally:
        gc.freeze()


async def test_the_catalog_in_force_is_frozen_after_start(service):
    catalog = service.app.holder.catalog
    assert gc.get_freeze_count() > 0
    assert id(catalog) not in _tracked_catalogs()
    assert id(catalog) in _all_catalogs()
    resp = await service.decide("home_hero", "pid:tom", context={"page": "home"})
    assert resp.decision_id


async def test_a_reload_frees_the_old_catalog_and_freezes_the_new_one(service):
    old = id(service.app.holder.catalog)
    text = service.catalog_path.read_text()
    service.catalog_path.write_text(text + "\n# a change: a new version\n")
    result = await service.app.reload_catalog()
    assert result.reloaded
    new = service.app.holder.catalog
    assert new.version == result.version
    assert id(new) not in _tracked_catalogs()  # frozen
    everything = _all_catalogs()
    assert id(new) in everything
    assert old not in everything  # collected, not kept alive by the freeze
    resp = await service.decide("home_hero", "pid:tom", context={"page": "home"})
    assert resp.decision_id


def test_the_collector_passes_are_counted():
    pauses = heap.watch()
    before = pauses.count[2], pauses.seconds[2]
    gc.collect()
    assert pauses.count[2] == before[0] + 1
    assert pauses.seconds[2] > before[1]
    assert pauses.longest[2] > 0


def test_settle_collects_garbage_in_cycles_that_an_earlier_freeze_kept():
    class Node:
        pass

    node = Node()
    node.me = node  # a reference cycle: reference counting alone never frees it
    ref = weakref.ref(node)
    gc.freeze()
    del node
    gc.collect()
    assert ref() is not None  # frozen: no collection reaches it
    heap.settle("test")
    assert ref() is None
