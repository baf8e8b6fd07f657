"""Feature cache for training and evaluation: the corpora run once through the same
extractors the live pipeline uses (``models.features``), stored under the cache folder.

Files (npz, loaded with allow_pickle=False):
- ``text_{corpus}.npz``          MiniLM token features of every sentence (clean);
- ``text_{corpus}_drop{k}.npz``  the train sentences again with word pieces dropped to
                                 [UNK] at a per-sentence rate r ~ U(0, 1) (LNLN's scheme);
- ``speech.npz``                 audio features of every RAVDESS / EmoDB clip;
- ``speech_aug{k}.npz``          train-speaker clips with augmentation k (1: noise at a
                                 random SNR and gain, 2: speed perturbation 0.9-1.1 and noise).
A file is rebuilt when it is missing; delete the folder to start over.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data import load_speech, load_text
from models.features.audio import SAMPLE_RATE, AudioFeatureExtractor

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
    def from_list(cls, seqs: list[np.ndarray], dtype=np.float16) -> "Ragged":
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
def _augment(audio: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import resample_poly

    a = audio.astype(np.float32)
    if kind == 2:
        speed = rng.uniform(0.9, 1.1)
        up = int(round(100 / speed))
        a = resample_poly(a, up, 100).astype(np.float32)
    gain = 10 ** (rng.uniform(-6, 6) / 20)
    a = a * gain
    snr_db = rng.uniform(10, 35)
    p = np.mean(a**2) + 1e-10
    noise = rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), len(a)).astype(np.float32)
    if rng.random() < 0.5:  # pink-ish: integrate white noise a little
        noise = np.cumsum(noise) * 0.05
        noise -= noise.mean()
        noise *= np.sqrt(p / 10 ** (snr_db / 10) / (np.mean(noise**2) + 1e-12))
    return np.clip(a + noise, -1, 1).astype(np.float32)


def speech_features(cache: Path, variant: int = 0, data_root=None, extractor: AudioFeatureExtractor | None = None):
    """(Ragged [F, 387] features, extra with 'row': the row in ``load_speech()`` of each clip).
    Variant 0: all clips; k > 0: train-speaker clips under augmentation k."""
    path = cache / ("speech.npz" if variant == 0 else f"speech_aug{variant}.npz")
    if not path.exists():
        ex = extractor or AudioFeatureExtractor(threads=2)
        df = load_speech(data_root)
        rows = np.arange(len(df)) if variant == 0 else np.flatnonzero(df["split"].to_numpy() == "train")
        rng = np.random.default_rng(SEED + 100 + variant)
        seqs = []
        import soundfile as sf  # imported here: training stages without audio run where libsndfile is absent

        for r in tqdm(rows, desc=f"audio features v{variant}", unit="clip"):
            a, sr = sf.read(df["path"].iloc[r], dtype="float32")
            if sr != SAMPLE_RATE or a.ndim != 1:
                raise ValueError(f"{df['path'].iloc[r]}: expected 16 kHz mono")
            if variant:
                a = _augment(a, variant, rng)
            seqs.append(ex(a))
        save_ragged(path, Ragged.from_list(seqs), row=rows)
    return load_ragged(path)
