"""Loaders for the labelled corpora under the data root (see ``models.paths.data_root``).

Every loader returns plain tables or arrays with a ``split`` of train / valid / test:
- text corpora keep their standard splits (select on valid, never on test);
- speech corpora are split by speaker, never by clip (``SPEECH_SPLITS``);
- FER-2013 keeps its test file; a fixed, stratified 5 % of its train file is valid.

In: the data root; out: pandas tables (text, speech) and arrays (faces). Used by
training, evaluation and the demo clips (``streaming.democlip``). Nothing here copies
data into the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.labels import EMODB_EMOTIONS, EMOTIONS, FER_EMOTIONS, RAVDESS_EMOTIONS
from models.paths import data_root
from models.types import score_to_class

TEXT_CORPORA = ("mosi", "mosei", "sims", "simsv2", "meld")
SPLITS = ("train", "valid", "test")

#: Held-out speakers. RAVDESS actors are numbered 1-20 here (odd = male);
#: EmoDB speakers by their two-digit code (03, 10, 11, 12, 15 male).
SPEECH_SPLITS = {
    "ravdess": {"valid": {15, 16}, "test": {17, 18, 19, 20}},
    "emodb": {"valid": {12, 13}, "test": {15, 16}},
}
FER_VALID_FRACTION = 0.05
FER_VALID_SEED = 2013


def load_text(name: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One text corpus as a table with columns id, text, score, cls, split, corpus.

    score: sentiment on the MOSI scale [-3, 3] (CH-SIMS labels in [-1, 1] are scaled by 3;
           NaN for MELD, which has classes only).
    cls:   sentiment class index (see ``models.types.score_to_class``; MELD's own label).
    text:  English text (CH-SIMS: the machine translation ``text_en``).
    """
    if name not in TEXT_CORPORA:
        raise ValueError(f"unknown text corpus {name!r}; one of {TEXT_CORPORA}")
    path = data_root(root) / "text" / f"{name}.csv"
    df = pd.read_csv(path)
    out = pd.DataFrame({"id": df["clip_id"].astype(str), "split": df["split"].astype(str)})
    if name in ("mosi", "mosei"):
        out["text"] = df["text"]
        out["score"] = df["label"].astype(np.float32)
    elif name in ("sims", "simsv2"):
        out["text"] = df["text_en"]
        out["score"] = (df["label"] * 3.0).astype(np.float32)
    else:  # meld
        out["text"] = df["text"]
        out["score"] = np.float32(np.nan)
    out["text"] = out["text"].fillna("").astype(str).str.strip()
    if name == "meld":
        out["cls"] = df["sentiment"].map({"negative": 0, "neutral": 1, "positive": 2}).astype(np.int64)
    else:
        out["cls"] = score_to_class(out["score"].to_numpy())
    out["corpus"] = name
    bad = set(out["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unexpected split names {bad}")
    return out.reset_index(drop=True)


def _speech_split(corpus: str, speaker: int) -> str:
    s = SPEECH_SPLITS[corpus]
    return "test" if speaker in s["test"] else "valid" if speaker in s["valid"] else "train"


def load_speech(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """RAVDESS and EmoDB clips: columns path, corpus, speaker, emotion, emotion_idx, split.

    emotion is a name from ``models.labels.EMOTIONS``; emotion_idx its index there.
    """
    base = data_root(root) / "audio"
    rows = []
    for p in sorted((base / "ravdess").glob("Actor_*/*.flac")):
        parts = p.stem.split("-")  # modality-channel-emotion-intensity-statement-repetition-actor
        if len(parts) != 7:
            raise ValueError(f"unexpected RAVDESS file name {p.name}")
        emo = RAVDESS_EMOTIONS[int(parts[2]) - 1]
        spk = int(parts[6])
        rows.append((str(p), "ravdess", spk, emo, _speech_split("ravdess", spk)))
    for p in sorted((base / "emodb").glob("*.flac")):
        spk, letter = int(p.stem[:2]), p.stem[5]
        emo = EMODB_EMOTIONS[letter]
        rows.append((str(p), "emodb", spk, emo, _speech_split("emodb", spk)))
    if not rows:
        raise FileNotFoundError(f"no speech clips under {base}")
    df = pd.DataFrame(rows, columns=["path", "corpus", "speaker", "emotion", "split"])
    df["emotion_idx"] = df["emotion"].map(EMOTIONS.index).astype(np.int64)
    return df


@dataclass
class FaceSet:
    """FER-2013 images of one split: images uint8 [N, 48, 48], emotion_idx int64 [N] into EMOTIONS."""

    images: np.ndarray
    emotion_idx: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.images)


def fer_emotion_indices(fer_labels: np.ndarray) -> np.ndarray:
    """FER-2013 label numbers -> indices into the unified ``EMOTIONS``."""
    lut = np.array([EMOTIONS.index(e) for e in FER_EMOTIONS], np.int64)
    return lut[np.asarray(fer_labels, np.int64)]


def load_faces(split: str, root: str | os.PathLike | None = None) -> FaceSet:
    """FER-2013 faces for split train / valid / test (valid: 5 % of the train file, stratified)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    base = data_root(root) / "vision"
    if split == "test":
        d = np.load(base / "fer2013_test.npz")
        return FaceSet(d["images"], fer_emotion_indices(d["labels"]), "test")
    d = np.load(base / "fer2013_train.npz")
    classes = [str(c) for c in d["classes"]]
    if classes != ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]:
        raise ValueError(f"unexpected FER-2013 class order {classes}")
    labels = d["labels"].astype(np.int64)
    rng = np.random.default_rng(FER_VALID_SEED)
    is_valid = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_valid[rng.choice(idx, int(round(len(idx) * FER_VALID_FRACTION)), replace=False)] = True
    keep = is_valid if split == "valid" else ~is_valid
    return FaceSet(d["images"][keep], fer_emotion_indices(labels[keep]), split)
