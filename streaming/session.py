"""A live session: one pipeline fed by one transport (browser, local devices or a replay),
with the state the UI shows. The UI keeps one per browser session and closes it when the
session ends.

    s = LiveSession(model, asr)
    s.video(frame)            # browser webcam frame (RGB uint8): queued, returns at once
    s.audio((48000, int16))   # browser microphone chunk: converted, queued
    s.results                 # WindowResult objects, oldest first (s.rows: as JSON dicts)
    s.configure(2.0, 0.5)     # new window / hop: a fresh pipeline, from now on
    s.close()

Live input (``video``, ``audio``, ``submit``) only stamps and queues the item; a worker
thread analyses the queue and lets the pipeline's clock run, so a slow window never holds
the browser's next frame back, and windows come out on the clock whatever the load. When
the worker falls behind, it thins the camera frames that waited too long to ``LATE_FPS``
and skips the rest (never audio, never windows): a skipped frame still proves the camera
alive (``Pipeline.skip``), and how far behind the worker is shows as ``lag["server"]`` on every window, never as a sensor fault. Items that were already
late when the server got them (the browser's queue, the network) show as
``lag["transport"]``, and windows wait for them up to ``STALL_HOLD_S``. When every input stops
at once (the transport or the server stalled; a dead sensor leaves the others arriving),
windows wait up to ``STALL_HOLD_S`` for the data on its way before judging. A replay
(``push``) is analysed on the caller's thread, at its own pace.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from models.types import MODALITIES, Modality
from streaming import export, limits
from streaming.faults import FaultInjector, FaultKind
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.types import VideoFrame, WindowResult

MAX_WINDOWS = 3600  # an hour of windows at a 1 s hop; older ones are forgotten
MAX_FRAME_BACKLOG_S = 0.5  # camera frames waiting longer than this are thinned ...
LATE_FPS = 2.0  # ... to this many a second: the rest are skipped, not analysed
SETTLE_S = 0.6  # live windows are judged this long after they end (the last chunk is in)
AUDIO_BURST_S = 10.0  # seconds of audio that may arrive at once (a burst after a stall)
STALL_HOLD_S = 3.0  # windows wait up to this long when every input stops at once
AUDIO_BEHIND_S = 2.0  # microphone chunks ending this long before they arrive are behind ...
AUDIO_DRIFT_S = 2.0  # ... and when they stay behind this long (a pause, not a burst after a
# stall of the transport, which catches up), the microphone's sample clock is re-anchored


class RateLimit:
    """A token bucket on the session's clock: ``take(amount, now)`` is True while the input
    stays within ``rate`` a second (bursts up to ``burst``: items held up in the transport
    arrive together and are not excess), False for the excess, which is counted in
    ``dropped``. What a visitor's tab (or a script) can make the server analyse."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens = self.burst
        self.last: float | None = None
        self.dropped = 0.0

    def take(self, amount: float, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if amount <= self.tokens:
            self.tokens -= amount
            return True
        self.dropped += amount
        return False


class LiveSession:
    """Live pipeline state for one user. ``asr`` is a ``StreamingASR`` (or None for no text);
    ``clock`` gives seconds on the session's clock (default: wall-clock seconds since the
    session began); ``worker=False`` analyses queued input only when ``process()`` is called
    (tests step it by hand)."""

    def __init__(
        self,
        model,
        asr=None,
        window_s: float = 3.0,
        hop_s: float = 1.0,
        asr_mode: str = "thread",
        clock=None,
        worker: bool = True,
        settle_s: float = SETTLE_S,
    ):
        from streaming.sources import BrowserInput

        self.model = model
        self.name = "session"  # names the exports (a replay: the recording's name)
        self._asr = asr
        self._asr_mode = asr_mode if asr is not None else "off"
        self.settle_s = settle_s
        self.faults = FaultInjector(seed=0)
        self.browser = BrowserInput()
        self._t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - self._t0)
        self._audio_started = False
        self._behind_since: float | None = None  # since when the microphone's chunks are behind
        self._lock = threading.Lock()  # results
        self._work = threading.RLock()  # the pipeline: one analysis at a time
        self._inbox: deque[tuple[float, object]] = deque()  # (arrival, item)
        self._wake = threading.Condition()
        self.results: list[WindowResult] = []  # the windows so far, oldest first
        self.errors: dict[str, str] = {}  # the last input error per modality
        self.workers: list = []  # local devices or a replay feeding this session
        self.frames_skipped = 0  # camera frames the worker had no time to analyse
        #: the visitor's limits (``streaming.limits``): camera frames a second and seconds of
        #: audio a second beyond them are dropped, counted in ``limited``
        self._frame_rate = RateLimit(limits.MAX_FRAMES_PER_S, 2 * limits.MAX_FRAMES_PER_S)
        self._audio_rate = RateLimit(limits.MAX_AUDIO_S_PER_S, AUDIO_BURST_S)
        self.last_input = self.clock()  # the clock reading of the newest input (idle sessions close)
        self.processed_to = -float("inf")  # the clock reading the last ``process`` ran to
        self.closed = False
        self.finished = threading.Event()  # set when the stream ended (``finish``)
        self.pipeline: Pipeline | None = None
        #: counts the pipelines so far: ``configure`` starts a new one, with no windows yet
        self.generation = 0
        self.configure(window_s, hop_s)
        self._thread = None
        if worker:
            self._thread = threading.Thread(target=self._run, name="live-session", daemon=True)
            self._thread.start()

    @property
    def fusion_name(self) -> str:
        """The fusion model this session's windows go to (``models.fusion.FUSIONS``)."""
        return getattr(self.model, "fusion_name", "lnln")

    def set_fusion(self, name: str) -> None:
        """The next windows are fused by ``name`` (lnln, dashfusion or hme); the windows so far
        keep theirs. ValueError (nothing changed) for a model that is not shipped."""
        with self._work:
            if hasattr(self.model, "set_fusion"):  # an engine's client: its batcher for that model
                self.model.set_fusion(name)
            else:
                self.model = self.model.with_fusion(name)
                if self.pipeline is not None:
                    self.pipeline.model = self.model

    def configure(self, window_s: float, hop_s: float) -> None:
        """New window and hop lengths, taking effect now: the current pipeline closes, its
        windows are cleared, and a fresh one starts on the same clock, inputs and faults.
        ValueError (nothing changed) for lengths the pipeline refuses."""
        live = self._asr_mode != "sync"
        cfg = PipelineConfig(
            window_s=float(window_s),
            hop_s=float(hop_s),
            asr_mode=self._asr_mode,
            settle_s=self.settle_s if live else 0.0,
            wait_late_s=STALL_HOLD_S if live else 0.0,
        )
        with self._work:
            again = self.pipeline is not None
            if again:
                self.pipeline.close()
            if self._asr is not None:
                self._asr.reset()
            self.cfg = cfg
            self.pipeline = Pipeline(self.model, self._asr, self.faults, cfg)
            if again:  # the new windows start now, not where the first input lands
                self.pipeline.begin(self.clock())
            with self._wake:
                self._inbox.clear()
            self._last_frame_t = -float("inf")
            self._newest_arrival = -float("inf")  # the latest arrival of any input
            with self._lock:
                self.results.clear()
            self.generation += 1

    # ------------------------------------------------------------ inputs
    def _take(self, windows: list[WindowResult], now: float | None = None) -> list[WindowResult]:
        if windows:
            if now is not None:  # how late each window came out: the server's lag (beyond
                # the wait for its data, on its way or late in the transport)
                for w in windows:
                    w.lag["server"] = round(max(0.0, now - w.t_end - self.pipeline.settle_now), 2)
            with self._lock:
                self.results.extend(windows)
                del self.results[:-MAX_WINDOWS]
        return windows

    def _queue(self, item) -> None:
        with self._wake:
            self._inbox.append((self.clock(), item))
            self._wake.notify()

    def video(self, frame) -> None:
        """A browser webcam frame, stamped with its arrival and queued. A bad frame becomes
        an unusable frame (health DEGRADED / DROPPED with the reason), never an exception."""
        if frame is None or self.closed:
            return
        now = self.last_input = self.clock()
        if not self._frame_rate.take(1.0, now):
            return  # over the visitor's frame rate: dropped, counted
        try:
            item = self.browser.video(frame, now)
            self.errors.pop("vision", None)
        except ValueError as e:
            self.reject(Modality.VISION, str(e), now)
            return
        self._queue(item)

    def reject(self, modality: Modality | str, problem: str, now: float | None = None) -> None:
        """An input of ``modality`` that arrived unusable (``problem``: why, for the page): it
        counts as the sensor delivering a bad item (health DEGRADED / DROPPED, "invalid frame:
        ..." / "invalid audio: ...")."""
        if self.closed:
            return
        modality = Modality(modality)
        now = self.clock() if now is None else now
        self.last_input = now
        self.errors[modality.value] = problem
        kind = "frame" if modality == Modality.VISION else "audio"
        self._queue(("reject", modality, now, f"invalid {kind}: {problem}"))

    def audio(self, chunk) -> None:
        """A browser microphone chunk ``(rate, samples)``, placed on the microphone's own
        sample clock, and queued. The clock is re-anchored to the wall clock when it runs
        ahead of it, or when the chunks have stayed over ``AUDIO_BEHIND_S`` behind for
        ``AUDIO_DRIFT_S`` (the microphone paused; chunks held up in the transport come in a
        burst that catches up, and keep their place)."""
        if chunk is None or self.closed:
            return
        now = self.last_input = self.clock()
        try:
            seconds = self.browser.seconds(chunk)  # its form checked (ValueError), its length
        except ValueError as e:
            self.reject(Modality.AUDIO, str(e), now)
            return
        if not self._audio_rate.take(seconds, now):
            return  # over the visitor's audio rate: dropped, counted
        try:
            if not self._audio_started:
                # the chunk's samples were recorded over its length before it arrived
                self.browser.start(max(0.0, now - seconds))
                self._audio_started = True
            item = self.browser.audio(chunk)
            behind = now - item.end > AUDIO_BEHIND_S
            if not behind:
                self._behind_since = None
            elif self._behind_since is None:
                self._behind_since = now
            if item.end > now + 0.3 or (behind and now - self._behind_since >= AUDIO_DRIFT_S):
                item = self.browser.audio(chunk, t=max(0.0, now - item.duration))
                self._behind_since = None
            self.errors.pop("audio", None)
        except ValueError as e:
            self.reject(Modality.AUDIO, str(e), now)
            return
        self._queue(item)

    def submit(self, item) -> None:
        """An item from a live local device (its own timestamps), queued like browser input."""
        if not self.closed:
            self._queue(item)

    def push(self, item, now: float | None = None) -> list[WindowResult]:
        """An item from a replay, analysed now on the caller's thread (its own timestamps);
        returns the windows that came out (also added to ``results``)."""
        if self.closed:
            return []
        with self._work:
            return self._take(self.pipeline.push(item, now))

    def process(self, now: float | None = None) -> int:
        """Analyses what is queued, then lets the clock run to ``now`` (default: the clock);
        returns the number of items taken. The worker calls it; tests without a worker do."""
        with self._work:
            with self._wake:
                batch, self._inbox = list(self._inbox), deque()
            p = self.pipeline
            for arrival, item in batch:
                if self.closed:
                    return len(batch)
                if isinstance(item, tuple):  # ("reject", modality, t, reason)
                    _, m, t, reason = item
                    p.reject(m, t, reason)
                    continue
                if isinstance(item, VideoFrame):
                    # behind: frames that waited too long are thinned to LATE_FPS, so the
                    # window still has faces to read and the backlog drains
                    late = self.clock() - arrival > MAX_FRAME_BACKLOG_S
                    if late and item.t < self._last_frame_t + 1.0 / LATE_FPS - 1e-6:
                        p.skip(item, arrival)
                        self.frames_skipped += 1
                        continue
                    self._last_frame_t = item.t
                self._take(p.push(item, arrival), self.clock())
            if batch:
                self._newest_arrival = max(self._newest_arrival, max(a for a, _ in batch))
            asked = t = self.clock() if now is None else now
            quiet = t - self._newest_arrival
            if self.cfg.health.no_data_s / 2 < quiet <= STALL_HOLD_S:
                # every input went quiet at once: the transport or this server stalled (a dead
                # sensor leaves the others arriving). The windows that what has arrived
                # covers come out; later ones wait for the data on its way, late (server
                # lag) rather than judged on what has not arrived yet
                t = min(t, self._newest_arrival + self.cfg.settle_s)
            self._take(p.advance(t), self.clock())
            self.processed_to = max(self.processed_to, asked)
            return len(batch)

    def _run(self) -> None:
        while not self.closed:
            with self._wake:
                if not self._inbox:
                    self._wake.wait(timeout=0.1)
            try:
                self.process()
            except Exception as e:  # shown on the page, the session goes on
                self.errors["session"] = f"{type(e).__name__}: {e}"
                time.sleep(0.2)

    @property
    def limited(self) -> dict[str, float]:
        """What the visitor's rate limits dropped so far: camera frames, seconds of audio."""
        return {"frames": int(self._frame_rate.dropped), "audio_s": round(self._audio_rate.dropped, 1)}

    def idle_for(self, now: float | None = None) -> float:
        """Seconds on the session's clock since its newest input (or since it began)."""
        return (self.clock() if now is None else now) - self.last_input

    def idle(self) -> bool:
        """Nothing queued (tests wait on it)."""
        with self._wake:
            return not self._inbox

    def tick(self, now: float | None = None) -> None:
        """Time passes (windows of dead sensors still come out); with a worker it runs anyway."""
        if not self.closed and self._thread is None:
            self.process(now)

    def finish(self, end: float | None = None) -> list[WindowResult]:
        """The stream ended at ``end`` (a replay's duration): the last words are committed and
        the final window, of its true length, comes out (``Pipeline.flush``); returns the
        windows that came out."""
        out: list[WindowResult] = []
        if not self.closed:
            with self._work:
                out = self._take(self.pipeline.flush(end))
        self.finished.set()
        return out

    def source_error(self, modality: str, message: str) -> None:
        self.errors[modality] = message
        self.pipeline.source_error(modality, message)

    # ------------------------------------------------------------ faults
    def set_faults(self, names: list[str], snr: float = 0.0, delay: float = 1.0) -> None:
        """Live faults from the UI's toggles, named ``modality:kind`` (e.g. ``vision:freeze``)."""
        wanted = set(names or [])
        now = self.clock()
        for m in MODALITIES:
            for k in FaultKind:
                name = f"{m.value}:{k.value}"
                try:
                    params = {"snr": snr} if k == FaultKind.NOISE else {"delay": delay} if k == FaultKind.DELAY else {}
                    self.faults.set_live(m, k, name in wanted, t=now, **params)
                except ValueError:
                    continue  # a kind that does not apply to this modality

    # ------------------------------------------------------------ outputs
    def windows(self, last: int | None = None) -> list[WindowResult]:
        """A copy of the windows so far (the last ``last`` of them), oldest first."""
        with self._lock:
            return list(self.results if last is None else self.results[-last:])

    @property
    def rows(self) -> list[dict]:
        """The windows so far as their JSON Lines objects (``WindowResult.to_json``)."""
        return [w.to_json() for w in self.windows()]

    def latest(self) -> WindowResult | None:
        with self._lock:
            return self.results[-1] if self.results else None

    def latency(self) -> dict[str, float]:
        import numpy as np

        lat = np.array([w.latency_ms for w in self.windows(300)], float)
        if not len(lat):
            return {}
        return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "last": float(lat[-1])}

    def export_json(self) -> str:
        return export.jsonl(self.windows())

    def export_csv(self) -> str:
        """The windows as CSV, one row each (``streaming.export``: the JSONL's fields
        flattened; empty where null)."""
        return export.csv_text(self.windows())

    def write_exports(self, folder: str | Path, stem: str = "session") -> tuple[Path, Path]:
        """Writes ``stem.csv`` and ``stem.jsonl`` (JSON Lines: one window per line) in ``folder``."""
        return export.write(self.windows(), folder, stem)

    def transcript_view(self, span_s: float = 60.0):
        """The recogniser's words of the last ``span_s`` seconds: (committed, partial) lists of
        ``streaming.types.Word`` (suspect words included, marked), for the transcript panel."""
        with self._work:
            tr = self.pipeline.transcript
        if tr is None:
            return [], []
        end = max([w.end for w in tr.committed + tr.partial], default=0.0)
        return [w for w in tr.committed if w.end > end - span_s], list(tr.partial)

    def reset(self) -> None:
        with self._lock:
            self.results.clear()

    def close(self) -> None:
        """Stops the workers feeding this session and frees the pipeline."""
        if self.closed:
            return
        self.closed = True
        for w in self.workers:
            try:
                w.stop()
            except Exception:  # already stopped
                pass
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._work:
            self.pipeline.close()
            if self._asr is not None:
                self._asr.reset()  # the recogniser's audio buffer and words (the transcript view keeps the last)
