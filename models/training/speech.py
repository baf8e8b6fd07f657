"""The speech stage: the emotion encoder on RAVDESS + EmoDB training speakers.

In: the audio window features of the feature cache (``models.training.feature_cache``),
clean and under the two augmentations; out: <run>/audio_encoder.safetensors, the epoch
with the best validation accuracy per clip (predictions restricted to the classes each
corpus labels, ``models.labels.corpus_emotion_mask``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from models import checkpoint
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.labels import corpus_emotion_mask
from models.training.best import BestWeights
from models.training.config import TrainConfig, one_cycle, seed_all
from models.training.feature_cache import speech_tables
from models.training.missing import draw_rates, drop_steps
from models.training.predict import clip_logits
from models.unimodal import pad_batch


def restricted_accuracy(logits: np.ndarray, labels: np.ndarray, corpora: np.ndarray) -> float:
    pred = np.array([np.where(corpus_emotion_mask(c), lg, -np.inf).argmax() for lg, c in zip(logits, corpora)])
    return float(np.mean(pred == labels))


def train_audio(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    df, clean, by_clip, variants = speech_tables(cache, data_root)
    train_rows = np.flatnonzero(df["split"].to_numpy() == "train")
    valid_rows = np.flatnonzero(df["split"].to_numpy() == "valid")
    if cfg.limit:
        train_rows, valid_rows = train_rows[: cfg.limit], valid_rows[: cfg.limit]
    labels = df["emotion_idx"].to_numpy()

    model = AudioEncoder(AudioEncoderConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.audio_lr, weight_decay=1e-2)
    steps = cfg.audio_epochs * math.ceil(len(train_rows) / cfg.audio_batch)
    sched = one_cycle(opt, steps, cfg.audio_lr, pct=0.15)
    best = BestWeights(lower_is_better=False, take_ties=True)  # a tie takes the later epoch
    for _ in tqdm(range(cfg.audio_epochs), desc="audio epochs"):
        model.train()
        perm = rng.permutation(train_rows)
        for i in range(0, len(perm), cfg.audio_batch):
            rows = perm[i : i + cfg.audio_batch]
            seqs, valids = [], []
            rates = draw_rates(len(rows), rng)[:, 1]
            for r, rate in zip(rows, rates):
                # one window of the clip, clean or under an augmentation (natural conditions)
                v = int(rng.integers(0, len(variants) + 1))
                rag, wins = (clean, by_clip) if v == 0 else variants[v - 1]
                seg = rag[int(rng.choice(wins[int(r)]))].astype(np.float32)
                valid = drop_steps(np.ones(len(seg), bool), rate, rng)
                if not valid.any():
                    valid[rng.integers(len(valid))] = True
                seqs.append(seg)
                valids.append(valid)
            x, m = pad_batch(seqs, seqs[0].shape[1], valids)
            loss = F.cross_entropy(model(x, m)["logits"], torch.from_numpy(labels[rows]), label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        acc = restricted_accuracy(
            clip_logits(model, clean, by_clip, valid_rows), labels[valid_rows], df["corpus"].to_numpy()[valid_rows]
        )
        best.update(acc, model)
    print(f"  audio: best valid accuracy {100 * best.score:.1f}")
    best.restore(model)
    checkpoint.save(run / "audio_encoder.safetensors", model, model.cfg, valid_acc=best.score)
