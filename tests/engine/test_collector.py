"""The bulk collector settings apply inside the block and are put back after it."""

from __future__ import annotations

import gc

import pytest

from cadence.engine.collector import BULK_THRESHOLDS, bulk_collection


def test_bulk_collection_tunes_the_collector_and_restores_it() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with bulk_collection():
        assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_bulk_collection_restores_the_collector_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), bulk_collection():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
