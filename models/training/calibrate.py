"""The domain and calibrate stages: what the runtime needs besides the encoders' weights.

In: the trained encoders of a run folder and the validation (and training) data; out:
- <run>/domain.safetensors (``fit_domain``): per modality, a Gaussian of the encoders'
  window summaries on training data and distance percentiles on validation data
  (``models.domain.fit``), so the runtime can tell in-domain input from the rest;
- <run>/calibration.json (``calibrate``): temperatures of the text classes, audio
  emotions and face emotions, each modality's ordinal spread (``models.ordinal``), the
  mean text score of each sentiment class and the training prior.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.labels import EMOTIONS, FER_EMOTIONS, sentiment_index, sentiment_matrix
from models.ordinal import fit_spread
from models.training.config import TrainConfig
from models.training.data import load_faces, load_text
from models.training.feature_cache import (
    TEXT_TRAIN_CORPORA,
    Ragged,
    speech_tables,
    text_split,
)
from models.training.metrics import fit_temperature
from models.training.predict import load_stack, predict_audio, predict_text
from models.types import FACE_EMB_DIM, WHISPER_DIM


@torch.no_grad()
def fit_domain(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:  # noqa: ARG001 - stage signature
    """<run>/domain.safetensors: per modality, a Gaussian of the window summary vectors
    (``UnimodalStack.summaries``) on training data and the distance percentiles on
    validation data (``models.domain.fit``). Text: MOSI + MOSEI sentences (the text
    encoder's states); audio: the speech clips' windows (training: clean and augmented);
    vision: FER-2013 images, the mean of their jittered views (a still face's window)."""
    from models import domain

    summaries = {}
    for split in ("train", "valid"):
        vecs = []
        for corpus in TEXT_TRAIN_CORPORA:
            df = load_text(corpus, data_root)
            with np.load(run / f"text_states_{corpus}_v0.npz") as z:
                rag = Ragged(z["values"], z["offsets"])
                where = {int(r): i for i, r in enumerate(z["index"])}
            rows = np.flatnonzero(df["split"].to_numpy() == split)
            vecs += [rag[where[int(r)]].astype(np.float32).mean(0) for r in rows]
        summaries["t", split] = np.stack(vecs)
    # audio: the mean Whisper part of each window (UnimodalStack.summaries); training
    # windows clean and under the augmentations (those conditions are trained for)
    df, clean, by_clip, variants = speech_tables(cache, data_root)
    split_of = df["split"].to_numpy()

    def whisper_mean(rag, i):
        return rag[i][:, :WHISPER_DIM].astype(np.float32).mean(0)

    train_rows = set(np.flatnonzero(split_of == "train").tolist())
    summaries["a", "train"] = np.stack(
        [whisper_mean(clean, i) for r, idx in by_clip.items() if r in train_rows for i in idx]
        + [whisper_mean(rag, i) for rag, wins in variants for r, idx in wins.items() if r in train_rows for i in idx]
    )
    summaries["a", "valid"] = np.stack(
        [whisper_mean(clean, i) for r, idx in by_clip.items() if split_of[r] == "valid" for i in idx]
    )
    for split in ("train", "valid"):
        views = np.load(run / f"face_views_{split}.npy")
        summaries["v", split] = views[:, :, :FACE_EMB_DIM].astype(np.float32).mean(1)
    stats = {}
    for k in domain.KEYS:
        stats[k] = domain.fit(summaries[k, "train"], summaries[k, "valid"])
        print(f"  in-domain {k}: d50 {stats[k]['ref'][0]:.2f}, d95 {stats[k]['ref'][1]:.2f} (validation)")
    domain.save(run / "domain.safetensors", stats)


def calibrate(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """Temperatures of the text classes, audio emotions and face emotions on validation data,
    and the mean text score of each sentiment class (train)."""
    stack = load_stack(run)
    feats, _, vcls, _ = text_split(cache, "valid", data_root, cfg.limit)
    t_scores, t_logits = predict_text(stack.text, feats)
    t_temp = fit_temperature(t_logits, vcls)

    df, clean, by_clip, _ = speech_tables(cache, data_root)
    clips = np.flatnonzero(df["split"].to_numpy() == "valid")
    # per window, as live: every window of every validation clip with its clip's label
    rows = np.array([r for r in clips for _ in by_clip[int(r)]])
    a_logits = predict_audio(stack.audio, [clean[i].astype(np.float32) for r in clips for i in by_clip[int(r)]])
    a_temp = fit_temperature(a_logits, df["emotion_idx"].to_numpy()[rows])

    valid = load_faces("valid", data_root)
    names = FER_EMOTIONS
    fy = np.array([names.index(EMOTIONS[e]) for e in valid.emotion_idx])
    views = np.load(run / "face_views_valid.npy").astype(np.float32)
    f_temp = fit_temperature(views[:, :, FACE_EMB_DIM:].reshape(-1, len(names)), np.repeat(fy, views.shape[1]))

    _, ty, tcls, _ = text_split(cache, "train", data_root)
    class_scores = [float(ty[tcls == c].mean()) for c in range(3)]
    prior = [float(np.mean(tcls == c)) for c in range(3)]

    # ordinal spread of each modality's own estimate (``models.ordinal``), on the same
    # validation data, the scores computed as ``UnimodalStack`` computes them
    t_spread = fit_spread(np.clip(t_scores, -3, 3), vcls)
    cs = np.array(class_scores)
    a_sent = torch.softmax(torch.from_numpy(a_logits) / a_temp, -1).numpy() @ sentiment_matrix(EMOTIONS)
    a_cls = np.array([sentiment_index(EMOTIONS[e]) for e in df["emotion_idx"].to_numpy()[rows]])
    a_spread = fit_spread((a_sent @ cs)[a_cls >= 0], a_cls[a_cls >= 0])
    f_probs = torch.softmax(torch.from_numpy(views[:, :, FACE_EMB_DIM:]) / f_temp, -1).mean(1).numpy()  # a window's mean
    f_cls = np.array([sentiment_index(e) for e in np.array(FER_EMOTIONS)[fy]])
    f_spread = fit_spread((f_probs @ sentiment_matrix(FER_EMOTIONS) @ cs)[f_cls >= 0], f_cls[f_cls >= 0])
    out = {
        "unimodal_temperature": [t_temp, a_temp, f_temp],
        "class_scores": class_scores,
        "unimodal_spread": [t_spread, a_spread, f_spread],
        "prior_probs": prior,
        "prior_score": float(ty.mean()),
    }
    (run / "calibration.json").write_text(json.dumps(out, indent=2))
    print("  calibration:", json.dumps(out))
