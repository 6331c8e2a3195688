"""Pool workers start clean even when the caller holds locks its workers' code takes."""
from __future__ import annotations

import multiprocessing
import threading

import pytest

from framegate.export.worker_pool import clean_context

_LOCK = threading.Lock()  # stands for a runtime's lock that another thread holds at the instant of a fork


def _take_the_lock(_: int) -> bool:
    with _LOCK:
        return True


def test_a_worker_does_not_inherit_a_lock_its_caller_holds() -> None:
    with _LOCK, clean_context(__name__).Pool(1) as pool:
        assert pool.map_async(_take_the_lock, [0]).get(timeout=60) == [True]


def test_a_plain_fork_would_have_waited_forever() -> None:
    """The hazard the clean context removes, shown on the same lock."""
    with _LOCK, multiprocessing.get_context("fork").Pool(1) as pool:
        with pytest.raises(multiprocessing.TimeoutError):
            pool.map_async(_take_the_lock, [0]).get(timeout=2)
