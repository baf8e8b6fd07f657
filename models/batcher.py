"""Dynamic batching across callers: many threads ``submit`` one request each, one worker
runs them together.

``Batcher(fn, max_batch, max_wait_s)``: ``fn`` takes a list of requests and returns a list
of as many results, in order. ``submit(x)`` returns a ``concurrent.futures.Future``. The
worker takes the requests waiting, and when fewer than ``max_batch`` are there waits at
most ``max_wait_s`` from the oldest one's arrival for more (so a lone caller waits a few
ms at most, and under load batches fill at once). Requests keep their order, within a batch
and between batches. When ``fn`` raises on a batch, each request of it is run alone, so a
request that fails spoils no one else's: only its own future gets the exception.

``start=False`` runs no worker: tests and single-threaded callers call ``step()``, which
runs what is queued now (no waiting). ``clock`` and ``wait`` are injectable for the same
reason. ``sizes`` counts the batch sizes run (for the benchmark). ``nice`` lowers the
worker thread's priority (``models.cpu.lower_priority``): the shared recogniser's batcher
runs below the windows.

``Seats(n)``: at most ``n`` callers at a time, admitted first come, first served. A caller
whose request is made of state that keeps growing while it waits (a recogniser's audio
buffer) takes a seat first and builds its request once seated, so what it submits is as
fresh as the wait allows; ``Batcher.seat`` is one with ``max_batch`` seats.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from models.cpu import lower_priority


class Seats:
    """At most ``n`` holders at once, admitted in the order they asked (``with seats():``).
    ``waits`` counts the callers that had to wait."""

    def __init__(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError(f"need at least one seat, got {n}")
        self.n = int(n)
        self.waits = 0
        self._free = self.n
        self._line: deque[object] = deque()
        self._cv = threading.Condition()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        me = object()
        with self._cv:
            self._line.append(me)
            if self._line[0] is not me or not self._free:
                self.waits += 1
            while self._line[0] is not me or not self._free:
                self._cv.wait()
            self._line.popleft()
            self._free -= 1
            self._cv.notify_all()  # the next in line may take a seat still free
        try:
            yield
        finally:
            with self._cv:
                self._free += 1
                self._cv.notify_all()

    @property
    def waiting(self) -> int:
        """Callers in line for a seat now."""
        with self._cv:
            return len(self._line)


class Batcher:
    def __init__(
        self,
        fn: Callable[[list], Sequence],
        max_batch: int = 32,
        max_wait_s: float = 0.004,
        name: str = "batcher",
        start: bool = True,
        clock: Callable[[], float] = time.monotonic,
        nice: int = 0,
    ) -> None:
        if max_batch < 1 or not 0 <= max_wait_s <= 1.0:
            raise ValueError(f"need max_batch >= 1 and 0 <= max_wait_s <= 1 s, got {max_batch}, {max_wait_s}")
        self.fn = fn
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.name = name
        self.clock = clock
        self.nice = nice
        self.sizes: Counter[int] = Counter()
        self.failures = 0
        self._queue: deque[tuple[float, Any, Future]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = None
        #: ``with batcher.seat():`` build the request and call; ``max_batch`` callers at once
        self.seat = Seats(self.max_batch)
        if start:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def submit(self, request: Any) -> Future:
        """Queues one request; its result (or exception) comes in the returned future."""
        f: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._queue.append((self.clock(), request, f))
            self._cv.notify()
        return f

    def __call__(self, request: Any, timeout: float | None = 60.0) -> Any:
        """``submit`` and wait for the result (raises the request's own exception)."""
        if self._thread is None:
            f = self.submit(request)
            self.step()
            return f.result(timeout=0)
        return self.submit(request).result(timeout=timeout)

    def _take(self) -> list[tuple[float, Any, Future]]:
        n = min(self.max_batch, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def step(self) -> int:
        """Runs one batch of what is queued now; returns its size (0: nothing queued)."""
        with self._cv:
            batch = self._take()
        self._run_batch(batch)
        return len(batch)

    def _run(self) -> None:
        if self.nice:
            lower_priority(self.nice)
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                # a lone request waits for company at most max_wait_s from its arrival
                deadline = self._queue[0][0] + self.max_wait_s
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch = self._take()
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[float, Any, Future]]) -> None:
        live = [(x, f) for _, x, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.sizes[len(live)] += 1
        try:
            out = list(self.fn([x for x, _ in live]))
            if len(out) != len(live):
                raise RuntimeError(f"{self.name}: {len(out)} results for {len(live)} requests")
        except Exception as e:
            if len(live) == 1:
                self.failures += 1
                live[0][1].set_exception(e)
                return
            for x, f in live:  # find the request that failed: each alone
                self._alone(x, f)
            return
        for (_, f), y in zip(live, out):
            f.set_result(y)

    def _alone(self, x: Any, f: Future) -> None:
        try:
            out = list(self.fn([x]))
            if len(out) != 1:
                raise RuntimeError(f"{self.name}: {len(out)} results for 1 request")
            f.set_result(out[0])
        except Exception as e:
            self.failures += 1
            f.set_exception(e)

    def close(self) -> None:
        """Runs what is queued, then stops the worker; later ``submit``s raise."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            while self.step():
                pass


__all__ = ["Batcher", "Seats"]
