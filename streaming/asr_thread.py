"""The recogniser on its own thread (the pipeline's ``asr_mode="thread"``, live use): audio goes
into the recogniser's buffer as it comes (``StreamingASR.push`` is thread-safe) and is
decoded as soon as new audio is there, but no sooner than ``every_s`` after the last decode
ended; the newest transcript is read whenever a window needs it, so a slow decode never
holds a window back. On an idle machine every microphone chunk is decoded on arrival; on a
busy one (a decode slower than the chunks come, or a shared recogniser serving many
sessions) decodes simply come less often, each over all the audio that arrived meanwhile,
including what came while the decode waited for its seat at a shared recogniser.
``nice`` lowers the thread's priority (``models.cpu``): live sessions run their recogniser
below their windows."""

from __future__ import annotations

import threading
import time

import numpy as np

from models.cpu import lower_priority
from models.features.audio import SAMPLE_RATE
from streaming.types import Transcript


class AsrThread:
    """Runs a ``StreamingASR`` on its own thread: ``push`` is cheap, ``latest`` returns the
    newest transcript; the recogniser decodes new audio, at most once per ``every_s``
    seconds after the previous decode."""

    def __init__(self, asr, every_s: float = 0.0, nice: int = 0):
        self.asr, self.every_s, self.nice = asr, every_s, nice
        self._lock = threading.Lock()
        self._cycle = threading.Lock()  # held while a decode cycle runs
        self._latest: Transcript | None = None
        self._stop = threading.Event()
        self._fresh = threading.Event()  # audio came since the last cycle began
        self.decode_ms: list[float] = []
        #: pipeline time up to which the audio has been decoded (the newest returned transcript)
        self.decoded_to = -np.inf
        self._pushed_to = 0.0  # pipeline time of the end of the audio pushed so far
        self._thread = threading.Thread(target=self._run, name="asr", daemon=True)
        self._thread.start()

    def push(self, samples: np.ndarray, t: float) -> None:
        """Into the recogniser's buffer now; audio it refuses becomes the transcript's error."""
        try:
            self.asr.push(samples, t)
        except ValueError as e:  # a bad chunk is a health state, not a crash
            with self._lock:
                self._latest = Transcript(t=t, error=str(e))
            return
        self._pushed_to = max(self._pushed_to, t + len(samples) / SAMPLE_RATE)
        self._fresh.set()

    def latest(self) -> Transcript | None:
        with self._lock:
            return self._latest

    def _run(self) -> None:
        if self.nice:
            lower_priority(self.nice)
        while not self._stop.wait(self.every_s):
            self._fresh.wait()
            if self._stop.is_set():
                return
            self._fresh.clear()
            with self._cycle:  # flush() waits for a cycle in progress
                t0 = time.perf_counter()
                try:
                    tr = self.asr.step()  # stamped with the end of the audio it read
                    self.decode_ms.append(1000 * (time.perf_counter() - t0))
                except Exception as e:  # a failed decode is a health state, not a crash
                    tr = Transcript(t=self._pushed_to, error=str(e) or type(e).__name__)
                with self._lock:
                    self._latest = tr
                    if not tr.error:
                        self.decoded_to = max(self.decoded_to, tr.t)

    def flush(self, now: float) -> Transcript:
        """End of stream: decodes what is pending and commits every word (``StreamingASR.flush``),
        on the caller's thread; returns the final transcript."""
        with self._cycle:
            try:
                tr = self.asr.flush(now)
            except Exception as e:  # a failed decode is a health state, not a crash
                tr = Transcript(t=now, error=str(e) or type(e).__name__)
            with self._lock:
                self._latest = tr
                if not tr.error:
                    self.decoded_to = max(self.decoded_to, now)
            return tr

    def close(self) -> None:
        self._stop.set()
        self._fresh.set()
        self._thread.join(timeout=5)
