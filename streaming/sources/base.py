"""What every source shares: the item and sink types, the limits, ``SourceError``, the
timestamp check, and ``Worker``, the thread plumbing of the capture and replay sources."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from streaming.types import AudioChunk, VideoFrame

log = logging.getLogger("streaming.sources")

Item = VideoFrame | AudioChunk
Sink = Callable[[Item], None]
Clock = Callable[[], float]

MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHUNK_S = 10.0  # longer browser chunks are refused
CHUNK_S = 0.1  # audio chunk length emitted by local and file sources
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
NO_PORTAUDIO = "no microphone: PortAudio library not found (apt install libportaudio2)"


class SourceError(RuntimeError):
    """A source cannot be used; the message is meant for the user."""


def check_t(t: float) -> float:
    """``t`` as float seconds; ValueError unless it is a finite number."""
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t):
        raise ValueError(f"timestamp must be a finite number of seconds, got {t!r}")
    return float(t)


class Worker:
    """Thread plumbing shared by the sources: sink, error reporting, start/stop, context manager."""

    def __init__(self, sink: Sink | None, on_error: Callable[[str], None] | None) -> None:
        self.sink = sink
        self.on_error = on_error
        self.error: str | None = None  # why the source stopped or never started
        self.dropped = 0  # items that could not be converted
        self.sink_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self):  # overridden
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device (called by stop() after the thread ended)."""

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the worker to end, wait up to ``timeout`` seconds, release the device."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def _fail(self, message: str):
        self.error = message
        log.warning("%s: %s", type(self).__name__, message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("on_error callback failed")
        return self

    def _frame(self, t: float, bgr, what: str) -> VideoFrame | None:
        """A decoded BGR frame at ``t`` as a ``VideoFrame`` (RGB, validated); None (counted,
        logged) if unusable."""
        try:
            return VideoFrame(t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        except (ValueError, cv2.error) as e:
            self.dropped += 1
            log.warning("%s dropped: %s", what, e)
            return None

    def _emit(self, item: Item) -> None:
        """Hand one item to the sink; a failing sink is logged, never raised in a worker."""
        if self.sink is None:
            return
        try:
            self.sink(item)
        except Exception:
            self.sink_errors += 1
            if self.sink_errors <= 3:
                log.exception("%s: sink failed", type(self).__name__)


def relative_clock() -> Clock:
    start = time.monotonic()
    return lambda: time.monotonic() - start
