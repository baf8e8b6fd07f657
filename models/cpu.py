"""How the app shares a few CPU cores: one thread per library call, and the recogniser below
the windows.

The app's parallelism comes from its sessions (a worker per browser tab, the engine's
batchers, the recogniser), so a library that splits one small call over every core only
adds threads that spin while they wait: on the 2-core EPYC one Whisper decode of an 8 s
buffer took 449 ms of CPU for 353 ms of wall time with numpy's OpenBLAS on its default two
threads, and 339 ms of CPU with one, in the same wall time.

- ``single_threaded()``: numpy's BLAS and OpenMP (torch's too) run each call on the calling
  thread. The app's ``App`` calls it; onnxruntime sessions are made with one intra-op
  thread (``models.runtime``) and CTranslate2 with the threads it is given.
- ``lower_priority(nice)``: the calling thread's nice value (Linux keeps one per thread),
  so the recogniser, which can always use more CPU, takes what the windows leave: a window
  is due every second and must come out at once; a decode that comes 100 ms later only
  shows its words 100 ms later. Returns False where the platform has no per-thread
  priority (the work still runs, at the normal priority).
- ``in_thread(fn, nice)``: ``fn()`` on a new thread at that priority, its result returned.
  CTranslate2 makes its worker threads when a model is loaded and they keep the priority of
  the thread that loaded it, so a Whisper model loaded this way decodes at that priority.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

#: the recogniser's nice value: under full load it gets about a tenth of a contended core
#: (the kernel's weights: 110 against 1024 at nice 0), and all of an idle one
RECOGNISER_NICE = 10

_limits = None  # threadpoolctl's handle, kept so the limits stay


def single_threaded() -> None:
    """numpy's BLAS, OpenMP and torch compute each call on the calling thread (module docstring)."""
    global _limits
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(limits=1)
    except Exception as e:  # threadpoolctl missing or a library it cannot steer: keep their defaults
        log.warning("could not limit the BLAS and OpenMP threads: %s", e)
    import torch

    torch.set_num_threads(1)


def lower_priority(nice: int) -> bool:
    """Sets the calling thread's nice value to at least ``nice`` (a higher value is a lower
    priority; it is never raised back). True when the thread now runs at it."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        if now < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except OSError as e:  # a sandbox may refuse it: run at the normal priority
        log.warning("could not lower the priority of thread %s: %s", threading.current_thread().name, e)
        return False


def priority() -> int:
    """The calling thread's nice value (0 where the platform has no per-thread value)."""
    if not sys.platform.startswith("linux"):
        return 0
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(fn, nice: int):
    """``fn()`` run on a new thread whose nice value is ``nice``; returns its result or
    raises its exception."""
    out: dict = {}

    def run() -> None:
        lower_priority(nice)
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the caller
            out["error"] = e

    t = threading.Thread(target=run, name="low-priority-load")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


__all__ = ["RECOGNISER_NICE", "in_thread", "lower_priority", "priority", "single_threaded"]
