"""Feature cache for training and evaluation: the corpora run once through the same
extractors the live pipeline uses (``models.features``), stored under the cache folder.

In: the corpora (``models.training.data``) and a cache folder; out: ``Ragged`` tables of
features (built on the first call, read from the cache after), and the training views of
them: ``text_split`` (MOSI + MOSEI sentences of a split) and ``speech_tables`` (speech
windows, clean and augmented, grouped by clip). ``cache_features`` is the cache stage of
``python -m models.training.train``.

Files (npz, loaded with allow_pickle=False):
- ``text_{corpus}.npz``          MiniLM token features of every sentence (clean);
- ``text_{corpus}_drop{k}.npz``  the train sentences again with word pieces dropped to
                                 [UNK] at a per-sentence rate r ~ U(0, 1) (LNLN's scheme);
- ``speech_win.npz``             audio features of 3 s windows of every RAVDESS / EmoDB
                                 clip, each window encoded alone as the live pipeline does;
- ``speech_win_aug{k}.npz``      windows of train-speaker clips under augmentation k (1:
                                 gain, room, noise; 2: speed, codec, noise).
A file is rebuilt when it is missing; delete the folder to start over.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.features.audio import SAMPLE_RATE, WINDOW_SAMPLES, AudioFeatureExtractor
from models.training.data import load_speech, load_text

TEXT_TRAIN_CORPORA = ("mosi", "mosei")
N_TEXT_VARIANTS = 2
N_SPEECH_VARIANTS = 2
SEED = 1234


@dataclass
class Ragged:
    """Variable-length sequences stored back to back: item i is values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_list(cls, seqs: list[np.ndarray], dtype=np.float16) -> Ragged:
        lengths = np.array([len(s) for s in seqs], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        dim = seqs[0].shape[1] if seqs else 0
        values = np.concatenate(seqs).astype(dtype) if seqs else np.zeros((0, dim), dtype)
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def save_ragged(path: Path, data: Ragged, **extra: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, values=data.values, offsets=data.offsets, **extra)
    tmp.replace(path)


def load_ragged(path: Path) -> tuple[Ragged, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        extra = {k: z[k] for k in z.files if k not in ("values", "offsets")}
        return Ragged(z["values"], z["offsets"]), extra


# ---------------------------------------------------------------- text
@lru_cache(maxsize=1)
def _text_extractor():
    """MiniLM, loaded on the first cache miss and shared by every later one."""
    from models.features.text import TextFeatureExtractor

    return TextFeatureExtractor()


def text_features(cache: Path, corpus: str, variant: int = 0, data_root=None, extractor=None):
    """(Ragged token features, extra) of one corpus; variant 0 is clean, k > 0 the train split
    with tokens dropped (extra['rate'] per sentence, extra['index'] rows of the corpus table)."""
    path = cache / (f"text_{corpus}.npz" if variant == 0 else f"text_{corpus}_drop{variant}.npz")
    if not path.exists():
        ex = extractor or _text_extractor()
        df = load_text(corpus, data_root)
        if variant == 0:
            index = np.arange(len(df))
            ids = ex.tokenize(df["text"].tolist())
            rates = np.zeros(len(df), np.float32)
        else:
            index = np.flatnonzero(df["split"].to_numpy() == "train")
            rng = np.random.default_rng(SEED + variant)
            rates = rng.uniform(0.0, 1.0, len(index)).astype(np.float32)
            ids = [ex.drop_tokens(x, r, rng) for x, r in zip(ex.tokenize(df["text"].iloc[index].tolist()), rates)]
        seqs = []
        step = 512
        for i in tqdm(range(0, len(ids), step), desc=f"MiniLM {corpus} v{variant}", unit="x512"):
            seqs += ex.embed_ids(ids[i : i + step])
        save_ragged(path, Ragged.from_list(seqs), index=index, rate=rates)
    return load_ragged(path)


def text_features_at_rate(cache: Path, corpus: str, split: str, rate: float, seed: int, data_root=None, extractor=None):
    """(Ragged token features, extra['index'] corpus rows) of one split with every inner word
    piece dropped to [UNK] with probability ``rate`` (LNLN's test protocol; seeded)."""
    path = cache / f"text_{corpus}_{split}_r{round(rate * 100):02d}_s{seed}.npz"
    if not path.exists():
        ex = extractor or _text_extractor()
        df = load_text(corpus, data_root)
        index = np.flatnonzero(df["split"].to_numpy() == split)
        rng = np.random.default_rng([seed, round(rate * 100)])
        ids = [ex.drop_tokens(x, rate, rng) for x in ex.tokenize(df["text"].iloc[index].tolist())]
        save_ragged(path, Ragged.from_list(ex.embed_ids(ids)), index=index)
    return load_ragged(path)


# ---------------------------------------------------------------- speech
def _room(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: convolution with exponentially decaying noise (RT60 0.2-0.8 s)
    after a direct path, the level kept."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.2, 0.8)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60)
    ir *= rng.uniform(0.1, 0.5) / (np.sqrt((ir**2).sum()) + 1e-12)
    ir[0] = 1.0
    out = fftconvolve(a, ir)[: len(a)]
    return (out * np.sqrt((a**2).mean() / ((out**2).mean() + 1e-12))).astype(np.float32)


def _codec(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A telephone-like codec: band-limited through 8 kHz and 8-bit mu-law."""
    from scipy.signal import resample_poly

    low = resample_poly(a, 1, 2)
    mu = 255.0
    peak = np.abs(low).max() + 1e-9
    x = low / peak
    q = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)) * 127) / 127
    x = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
    return resample_poly(x * peak, 2, 1)[: len(a)].astype(np.float32)


def _augment(audio: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Natural-recording conditions for acted studio speech. Kind 1: gain, a room (half the
    clips) and noise; kind 2: speed 0.9-1.1, a codec (half the clips) and noise. Noise:
    white or pink-ish at an SNR of 5-35 dB; gain -20..+6 dB before it."""
    from scipy.signal import resample_poly

    a = audio.astype(np.float32)
    if kind == 2:
        speed = rng.uniform(0.9, 1.1)
        up = int(round(100 / speed))
        a = resample_poly(a, up, 100).astype(np.float32)
        if rng.random() < 0.5:
            a = _codec(a, rng)
    elif rng.random() < 0.5:
        a = _room(a, rng)
    gain = 10 ** (rng.uniform(-20, 6) / 20)
    a = a * gain
    snr_db = rng.uniform(5, 35)
    p = np.mean(a**2) + 1e-10
    noise = rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), len(a)).astype(np.float32)
    if rng.random() < 0.5:  # pink-ish: integrate white noise a little
        noise = np.cumsum(noise) * 0.05
        noise -= noise.mean()
        noise *= np.sqrt(p / 10 ** (snr_db / 10) / (np.mean(noise**2) + 1e-12))
    return np.clip(a + noise, -1, 1).astype(np.float32)


def window_starts(n_samples: int, k: int, rng: np.random.Generator | None = None) -> list[int]:
    """Sample offsets of the windows cut from a clip of n_samples: the whole clip when it
    is no longer than one window; else the first, middle and last window (k = 3) or, with
    ``rng``, k random offsets."""
    span = n_samples - WINDOW_SAMPLES
    if span <= 0:
        return [0]
    if rng is not None:
        return sorted(int(x) for x in rng.integers(0, span + 1, k))
    return sorted({0, span // 2, span}) if k >= 3 else sorted({0, span})[:k]


def window_features(extractor: AudioFeatureExtractor, audio: np.ndarray, start: int) -> np.ndarray:
    """[F, 387] features of the window at ``start`` of a clip: exactly what the live
    pipeline computes for a window holding those samples (one window encoded alone,
    loudness-normalised by the extractor)."""
    return extractor(audio[start : start + WINDOW_SAMPLES])


def speech_features(cache: Path, variant: int = 0, data_root=None, extractor: AudioFeatureExtractor | None = None):
    """(Ragged [F, 387] features of clip windows, extra): each window is ``WINDOW_SECONDS``
    of one clip (the whole clip when shorter) encoded alone, as the live pipeline encodes
    its windows (``window_features``). extra['row']: the row in ``load_speech()`` of each
    window's clip; extra['start']: its first sample. Variant 0: every clip, its first,
    middle and last window; k > 0: train-speaker clips under augmentation k, two random
    windows each."""
    path = cache / ("speech_win.npz" if variant == 0 else f"speech_win_aug{variant}.npz")
    if not path.exists():
        ex = extractor or AudioFeatureExtractor(threads=2)
        df = load_speech(data_root)
        rows = np.arange(len(df)) if variant == 0 else np.flatnonzero(df["split"].to_numpy() == "train")
        rng = np.random.default_rng(SEED + 100 + variant)
        seqs, win_rows, starts = [], [], []
        import soundfile as sf  # imported here: training stages without audio run where libsndfile is absent

        for r in tqdm(rows, desc=f"audio window features v{variant}", unit="clip"):
            a, sr = sf.read(df["path"].iloc[r], dtype="float32")
            if sr != SAMPLE_RATE or a.ndim != 1:
                raise ValueError(f"{df['path'].iloc[r]}: expected 16 kHz mono")
            if variant:
                a = _augment(a, variant, rng)
            for st in window_starts(len(a), 3 if variant == 0 else 2, rng if variant else None):
                seqs.append(window_features(ex, a, st))
                win_rows.append(r)
                starts.append(st)
        save_ragged(path, Ragged.from_list(seqs), row=np.array(win_rows, np.int64), start=np.array(starts, np.int64))
    return load_ragged(path)


def windows_by_clip(extra: dict[str, np.ndarray]) -> dict[int, list[int]]:
    """Clip row -> indices of its windows in a ``speech_features`` table."""
    out: dict[int, list[int]] = {}
    for i, r in enumerate(extra["row"]):
        out.setdefault(int(r), []).append(i)
    return out


# ---------------------------------------------------------------- tables for the trainers
def text_split(cache: Path, split: str, data_root, limit: int = 0):
    """(list of clean token arrays, scores, classes, (corpus, row) keys) of MOSI + MOSEI."""
    feats, scores, classes, keys = [], [], [], []
    for corpus in TEXT_TRAIN_CORPORA:
        df = load_text(corpus, data_root)
        rag, _ = text_features(cache, corpus, 0, data_root)
        rows = np.flatnonzero(df["split"].to_numpy() == split)
        if limit:
            rows = rows[:limit]
        feats += [rag[r] for r in rows]
        scores.append(df["score"].to_numpy()[rows])
        classes.append(df["cls"].to_numpy()[rows])
        keys += [(corpus, int(r)) for r in rows]
    return feats, np.concatenate(scores).astype(np.float32), np.concatenate(classes), keys


def speech_tables(cache: Path, data_root):
    """(speech table, clean window features, clip row -> its clean windows, and per
    augmentation (window features, clip row -> its windows))."""
    df = load_speech(data_root)
    clean, extra = speech_features(cache, 0, data_root)
    variants = []
    for k in range(1, N_SPEECH_VARIANTS + 1):
        rag, e = speech_features(cache, k, data_root)
        variants.append((rag, windows_by_clip(e)))
    return df, clean, windows_by_clip(extra), variants


def cache_features(cfg, cache: Path, run: Path, data_root) -> None:
    """The cache stage: every file above that the trainers read, built where missing
    (``cfg`` is the run's ``TrainConfig``; the audio extractor uses its ``threads``)."""
    from models.features.audio import AudioFeatureExtractor

    for corpus in TEXT_TRAIN_CORPORA:
        for k in range(N_TEXT_VARIANTS + 1):
            text_features(cache, corpus, k, data_root)  # MiniLM loads on the first miss only
    aex = AudioFeatureExtractor(threads=cfg.threads)
    for k in range(N_SPEECH_VARIANTS + 1):
        speech_features(cache, k, data_root, aex)
