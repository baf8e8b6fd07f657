"""A live session: one pipeline fed by one transport (browser, local devices or a replay),
with the state the UI shows. The UI keeps one per browser session and closes it when the
session ends.

    s = LiveSession(model, asr_factory)
    s.video(frame)            # browser webcam frame (RGB uint8)
    s.audio((48000, int16))   # browser microphone chunk
    s.tick()                  # time passes (windows of dead sensors still come out)
    s.rows                    # WindowResult.to_json() dicts, oldest first
    s.close()
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from pathlib import Path

from models.types import MODALITIES, SENTIMENT_CLASSES, Modality
from streaming.faults import FaultInjector, FaultKind
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.types import WindowResult

MAX_ROWS = 3600  # an hour of windows at a 1 s hop; older ones are forgotten


class LiveSession:
    """Live pipeline state for one user. ``asr`` is a ``StreamingASR`` (or None for no text)."""

    def __init__(self, model, asr=None, window_s: float = 3.0, hop_s: float = 1.0, asr_mode: str = "thread", clock=None):
        from streaming.sources import BrowserInput

        self.model = model
        self.faults = FaultInjector(seed=0)
        self.cfg = PipelineConfig(window_s=window_s, hop_s=hop_s, asr_mode=asr_mode if asr is not None else "off")
        self.pipeline = Pipeline(model, asr, self.faults, self.cfg)
        self.browser = BrowserInput()
        self._t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - self._t0)
        self._audio_started = False
        self._lock = threading.Lock()
        self.rows: list[dict] = []
        self.errors: dict[str, str] = {}  # the last input error per modality
        self.workers: list = []  # local devices or a replay feeding this session
        self.closed = False
        self.finished = threading.Event()  # set when the stream ended (``finish``)

    # ------------------------------------------------------------ inputs
    def _take(self, windows: list[WindowResult]) -> None:
        if windows:
            with self._lock:
                self.rows.extend(w.to_json() for w in windows)
                del self.rows[:-MAX_ROWS]

    def video(self, frame) -> None:
        """A browser webcam frame; bad frames become an unusable frame (health DEGRADED /
        DROPPED with the reason), never an exception."""
        if frame is None or self.closed:
            return
        now = self.clock()
        try:
            item = self.browser.video(frame, now)
            self.errors.pop("vision", None)
        except ValueError as e:
            self.errors["vision"] = str(e)
            self.pipeline.reject(Modality.VISION, now, f"invalid frame: {e}")
            self._take(self.pipeline.advance(now))
            return
        self._take(self.pipeline.push(item, now))

    def audio(self, chunk) -> None:
        """A browser microphone chunk ``(rate, samples)``."""
        if chunk is None or self.closed:
            return
        now = self.clock()
        try:
            if not self._audio_started:
                rate, samples = chunk
                # the chunk's samples were recorded over its length before it arrived
                self.browser.start(max(0.0, now - len(samples) / max(int(rate), 1)))
                self._audio_started = True
            item = self.browser.audio(chunk)
            if abs(item.end - now) > 0.3:  # the sample clock drifted from the wall clock
                item = self.browser.audio(chunk, t=max(0.0, now - item.duration))
            self.errors.pop("audio", None)
        except ValueError as e:
            self.errors["audio"] = str(e)
            self.pipeline.reject(Modality.AUDIO, now, f"invalid audio: {e}")
            self._take(self.pipeline.advance(now))
            return
        self._take(self.pipeline.push(item, now))

    def push(self, item, now: float | None = None) -> None:
        """An item from a local device or a replay (its own timestamps)."""
        if not self.closed:
            self._take(self.pipeline.push(item, now))

    def tick(self, now: float | None = None) -> None:
        if not self.closed:
            self._take(self.pipeline.advance(self.clock() if now is None else now))

    def finish(self, end: float | None = None) -> None:
        """The stream ended at ``end`` (a replay's duration): the last words are committed and
        the final window, of its true length, comes out (``Pipeline.flush``)."""
        if not self.closed:
            self._take(self.pipeline.flush(end))
        self.finished.set()

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
    def latest(self) -> dict | None:
        with self._lock:
            return self.rows[-1] if self.rows else None

    def latency(self) -> dict[str, float]:
        import numpy as np

        with self._lock:
            lat = np.array([r["latency_ms"] for r in self.rows[-300:]], float)
        if not len(lat):
            return {}
        return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "last": float(lat[-1])}

    def export_json(self) -> str:
        with self._lock:
            return "\n".join(json.dumps(r) for r in self.rows) + ("\n" if self.rows else "")

    def export_csv(self) -> str:
        cols = ["t_start", "t_end", "score", "label", "confidence"] + [f"p_{c}" for c in SENTIMENT_CLASSES]
        for m in MODALITIES:
            cols += [f"{m.value}_state", f"{m.value}_reason", f"{m.value}_score"]
        cols += ["transcript", "partial", "latency_ms"]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        with self._lock:
            rows = list(self.rows)
        for r in rows:
            line = [r["t_start"], r["t_end"], r["score"], r["label"], r["confidence"]]
            line += [r["confidences"][c] for c in SENTIMENT_CLASSES]
            for m in MODALITIES:
                d = r["modalities"][m.value]
                line += [d["state"], d["reason"], "" if d["score"] is None else d["score"]]
            line += [r["transcript"], r["partial"], r["latency_ms"]]
            w.writerow(line)
        return buf.getvalue()

    def write_exports(self, folder: str | Path) -> tuple[Path, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        c, j = folder / "session.csv", folder / "session.jsonl"
        c.write_text(self.export_csv())
        j.write_text(self.export_json())
        return c, j

    def reset(self) -> None:
        with self._lock:
            self.rows.clear()

    def close(self) -> None:
        """Stops the workers feeding this session and frees the pipeline."""
        if self.closed:
            return
        self.closed = True
        for w in self.workers:
            try:
                w.stop()
            except Exception:  # noqa: BLE001 - already stopped
                pass
        self.pipeline.close()
