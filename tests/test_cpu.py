"""How the app shares the CPU: library threads, and the recogniser's lower priority."""

import sys
import threading

import pytest

from models import cpu
from models.batcher import Batcher

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")


@linux
def test_a_thread_lowers_its_own_priority_only():
    seen = {}

    def work():
        seen["ok"] = cpu.lower_priority(7)
        seen["nice"] = cpu.priority()
        cpu.lower_priority(3)  # never raised back
        seen["after"] = cpu.priority()

    before = cpu.priority()
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"ok": True, "nice": max(7, before), "after": max(7, before)}
    assert cpu.priority() == before  # the caller's own stays


@linux
def test_in_thread_returns_or_raises_and_batcher_workers_run_below():
    assert cpu.in_thread(cpu.priority, 9) >= 9
    with pytest.raises(KeyError):
        cpu.in_thread(lambda: {}["missing"], 9)
    b = Batcher(lambda xs: [cpu.priority() for _ in xs], nice=6, max_wait_s=0.0)
    try:
        assert b(1) >= 6
    finally:
        b.close()


def test_libraries_compute_on_the_calling_thread():
    import torch
    from threadpoolctl import threadpool_info

    cpu.single_threaded()
    assert torch.get_num_threads() == 1
    assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] in ("blas", "openmp"))
