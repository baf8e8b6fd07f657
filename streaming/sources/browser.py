"""``BrowserInput``: what Gradio's streaming webcam and microphone send, as items."""

from __future__ import annotations

import numpy as np

from models.features.audio import SAMPLE_RATE, channel_axis, to_mono_16k
from streaming.sources.base import MAX_CHUNK_S, MAX_RATE, MIN_RATE, check_t
from streaming.types import AudioChunk, VideoFrame


class BrowserInput:
    """Converts Gradio streaming payloads. Stateless except the audio sample clock."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._anchor: float | None = None  # time of the first sample counted from
        self._elapsed = 0.0  # seconds of input since the anchor (input samples / input rate)

    def start(self, t0: float = 0.0) -> None:
        """Reset the sample clock: the next chunk given without ``t`` starts at ``t0``."""
        self._t0, self._anchor, self._elapsed = check_t(t0), None, 0.0

    def video(self, frame: np.ndarray, t: float) -> VideoFrame:
        """A webcam frame (uint8 RGB [H, W, 3], RGBA [H, W, 4] or gray [H, W] / [H, W, 1]) at
        time ``t`` -> ``VideoFrame`` with an RGB image (the frame is checked and converted
        once, as the ``VideoFrame`` is made). ValueError on anything else."""
        t = check_t(t)
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"video frame must be a numpy array, got {type(frame).__name__}")
        return VideoFrame(t, frame)

    @staticmethod
    def _parse(chunk) -> tuple[int, np.ndarray, int]:
        """(rate, samples, samples per channel) of a microphone chunk, or ValueError saying
        what is wrong with its form: not a ``(rate, samples)`` pair, a rate that is not an
        integer within ``MIN_RATE``..``MAX_RATE``, samples that are not a 1-D or [n, channels]
        numpy array (at most ``MAX_CHANNELS`` channels, on either axis), empty, or longer than
        ``MAX_CHUNK_S``."""
        if not isinstance(chunk, (tuple, list)) or len(chunk) != 2:
            raise ValueError(f"audio chunk must be a (rate, samples) tuple, got {type(chunk).__name__}")
        rate, samples = chunk
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
            raise ValueError(f"audio sample rate must be an integer, got {rate!r:.40}")
        if not MIN_RATE <= int(rate) <= MAX_RATE:
            raise ValueError(f"audio sample rate {rate!r:.40} Hz outside {MIN_RATE}..{MAX_RATE} Hz")
        if not isinstance(samples, np.ndarray):
            raise ValueError(f"audio samples must be a numpy array, got {type(samples).__name__}")
        if samples.ndim not in (1, 2):
            raise ValueError(f"audio must be 1-D or [n, channels], got shape {samples.shape}")
        n = samples.shape[0] if samples.ndim == 1 else samples.shape[1 - channel_axis(samples.shape)]
        if samples.size == 0 or n == 0:
            raise ValueError("empty audio chunk")
        if n / int(rate) > MAX_CHUNK_S:
            raise ValueError(f"audio chunk of {n / int(rate):.1f} s longer than {MAX_CHUNK_S:.0f} s")
        return int(rate), samples, n

    def seconds(self, chunk) -> float:
        """How long a microphone chunk ``(rate, samples)`` lasts, in seconds, once its form is
        checked (ValueError as ``audio`` gives for a malformed chunk; its samples' values are
        not looked at). Nothing changes: the session sizes the chunk with it."""
        rate, _, n = self._parse(chunk)
        return n / rate

    def audio(self, chunk: tuple[int, np.ndarray], t: float | None = None) -> AudioChunk:
        """A microphone chunk ``(rate, samples)`` (int16 / int32 / float, mono or [n, channels])
        -> float32 mono 16 kHz ``AudioChunk``. With ``t`` None the chunk follows the previous
        one on a continuous sample clock; a given ``t`` re-anchors that clock.
        ValueError on a malformed, empty, non-finite, too long chunk or a bad rate."""
        rate, samples, n = self._parse(chunk)
        mono = to_mono_16k(samples, rate)  # dtype and NaN checks
        if t is not None:
            self._anchor, self._elapsed = check_t(t), 0.0
        elif self._anchor is None:
            self._anchor, self._elapsed = self._t0, 0.0
        start = self._anchor + self._elapsed
        self._elapsed += n / rate  # input samples: resampling rounding does not drift
        return AudioChunk(start, mono, SAMPLE_RATE)
