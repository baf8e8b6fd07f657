"""Speech detection for the streaming recogniser: Silero's speech probability per 32 ms of a
growing buffer, each 32 ms computed once, and the speech spans and pauses read from them.

faster-whisper ships Silero VAD v6 (ONNX) and its ``get_speech_timestamps`` runs it over the
whole audio it is given. The recogniser decodes a buffer that grows by half a second at a
time, so running that on every decode repeats most of the work (37 ms for a 12.8 s buffer
against 1.7 ms for its last 0.5 s, on the 2-core EPYC). The network is recurrent over its
512-sample windows (each window also reads the 64 samples before it), so
``SpeechDetector`` keeps the state after the last whole window and the probabilities so far
and runs only the windows that are new: the same numbers as a pass over the whole buffer
(``tests/test_vad.py``).

- ``SpeechDetector.probs(buffer)`` -> one probability per 512 samples of ``buffer`` (the
  last window zero-padded, as faster-whisper pads it); ``drop(n)`` when the buffer's first
  ``n`` samples are cut (a multiple of 512 keeps what was computed), ``reset()`` for a new
  stream.
- ``speech_spans(probs, n_samples, ...)`` -> ``[(start, end)]`` in samples: a span starts
  at a window at or over ``threshold`` and ends where the probability falls under
  ``neg_threshold`` and stays out of speech for ``min_silence_s``; spans are then padded by
  ``pad_s`` (half the gap when two spans are closer than two pads). With its defaults these
  are the spans ``get_speech_timestamps`` gives with faster-whisper's defaults, which the
  recogniser's voice-activity filter uses (tests compare them on real speech).
- ``last_pause(probs, n_samples, pause_s)`` -> where the latest pause of at least
  ``pause_s`` inside the buffer begins and ends (the speech stopped there), or None.
"""

from __future__ import annotations

import numpy as np

WINDOW = 512  # samples per probability (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous window each window also reads
THRESHOLD = 0.5  # faster-whisper's defaults (VadOptions)
NEG_THRESHOLD = THRESHOLD - 0.15
MIN_SILENCE_S = 2.0
PAD_S = 0.4
RATE = 16000


class SpeechDetector:
    """Incremental Silero speech probabilities of one growing buffer (module docstring).
    ``model``: a faster-whisper ``SileroVADModel`` (default: the one faster-whisper ships,
    loaded once per process). Not thread-safe: one per stream, used by its owner."""

    def __init__(self, model=None) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        """A new stream: nothing computed, the network's state at zero."""
        self._probs = np.zeros(0, np.float32)  # of the whole windows computed so far
        self._tail = np.zeros(CONTEXT, np.float32)  # the last samples before the next window
        self._state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))

    @property
    def session(self):
        if self._model is None:
            from faster_whisper.vad import get_vad_model

            self._model = get_vad_model()
        return self._model.session

    def _run(self, windows: np.ndarray, tail: np.ndarray, state) -> tuple[np.ndarray, tuple]:
        context = np.concatenate([tail[None], windows[:-1, -CONTEXT:]]) if len(windows) > 1 else tail[None]
        x = np.concatenate([context, windows], axis=1).astype(np.float32)
        p, h, c = self.session.run(None, {"input": x, "h": state[0], "c": state[1]})
        return np.asarray(p, np.float32).ravel(), (h, c)

    def probs(self, buffer: np.ndarray) -> np.ndarray:
        """One speech probability per ``WINDOW`` samples of ``buffer`` (float32 mono 16 kHz,
        the same buffer as before, grown at its end), ``len(buffer) // WINDOW + 1`` of them:
        the last window holds the samples past the whole ones, zero-padded."""
        buffer = np.asarray(buffer, np.float32)
        whole = len(buffer) // WINDOW
        done = len(self._probs)
        if whole < done:
            raise ValueError(f"the buffer shrank ({len(buffer)} samples) without drop(): {done} windows were computed")
        if whole > done:
            windows = buffer[done * WINDOW : whole * WINDOW].reshape(-1, WINDOW)
            p, self._state = self._run(windows, self._tail, self._state)
            self._probs = np.concatenate([self._probs, p])
            self._tail = windows[-1, -CONTEXT:].copy()
        last = np.zeros((1, WINDOW), np.float32)
        rest = buffer[whole * WINDOW :]
        last[0, : len(rest)] = rest
        p_last, _ = self._run(last, self._tail, self._state)  # not kept: the window is still filling
        return np.concatenate([self._probs, p_last])

    def drop(self, n: int) -> None:
        """The buffer's first ``n`` samples were cut. A whole number of windows, all computed,
        keeps the rest; otherwise the next ``probs`` starts over on the new buffer."""
        if n <= 0:
            return
        if n % WINDOW or n // WINDOW > len(self._probs):
            self.reset()
            return
        self._probs = self._probs[n // WINDOW :]


def speech_spans(
    probs: np.ndarray,
    n_samples: int,
    threshold: float = THRESHOLD,
    neg_threshold: float = NEG_THRESHOLD,
    min_silence_s: float = MIN_SILENCE_S,
    pad_s: float = PAD_S,
    min_speech_s: float = 0.0,
) -> list[tuple[int, int]]:
    """Speech spans ``[(start, end)]`` in samples from per-window probabilities (module
    docstring); ``n_samples`` is the audio's length (spans end there at the latest)."""
    min_silence = min_silence_s * RATE
    spans: list[list[int]] = []
    start = quiet_from = None  # in speech since; out of speech (under neg_threshold) since
    for i, p in enumerate(np.asarray(probs, float)):
        at = i * WINDOW
        if start is None:
            if p >= threshold:
                start, quiet_from = at, None
            continue
        if p >= threshold:
            quiet_from = None
        elif p < neg_threshold:
            quiet_from = at if quiet_from is None else quiet_from
            if at - quiet_from >= min_silence:
                if quiet_from - start > min_speech_s * RATE:
                    spans.append([start, quiet_from])
                start = quiet_from = None
    if start is not None and n_samples - start > min_speech_s * RATE:
        spans.append([start, n_samples])
    pad = int(pad_s * RATE)
    for k, s in enumerate(spans):
        if k == 0:
            s[0] = max(0, s[0] - pad)
        if k + 1 < len(spans):
            gap = spans[k + 1][0] - s[1]
            half = gap // 2 if gap < 2 * pad else pad
            s[1] += half
            spans[k + 1][0] = max(0, spans[k + 1][0] - half)
        else:
            s[1] = min(n_samples, s[1] + pad)
    return [(int(a), int(b)) for a, b in spans]


def last_pause(probs: np.ndarray, n_samples: int, pause_s: float) -> tuple[int, int] | None:
    """The latest pause of at least ``pause_s`` after speech in the audio, as (where the
    speech stopped, where it resumed or the audio's end) in samples; None when the speaker
    has not paused that long since speaking (or has not spoken)."""
    spans = speech_spans(probs, n_samples, min_silence_s=pause_s, pad_s=0.0)
    if not spans:
        return None
    if spans[-1][1] < n_samples:  # the last span closed: the speaker is still quiet
        return spans[-1][1], n_samples
    if len(spans) > 1:
        return spans[-2][1], spans[-1][0]
    return None


__all__ = ["SpeechDetector", "last_pause", "speech_spans"]
