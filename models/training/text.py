"""The text stages: the sentiment encoder on CMU-MOSI + CMU-MOSEI, and its cached outputs.

In: the MiniLM token features of the feature cache (``models.training.feature_cache``),
clean and with word pieces dropped; out: <run>/text_encoder.safetensors (``train_text``,
the epoch with the lowest validation MAE) and <run>/text_states_{corpus}_v{k}.npz, the
trained encoder's token states, scores and class logits of every sentence and dropped
copy (``text_states``, read by the fusion stages).
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
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.training.best import BestWeights
from models.training.config import TrainConfig, length_batches, one_cycle, seed_all
from models.training.feature_cache import (
    N_TEXT_VARIANTS,
    TEXT_TRAIN_CORPORA,
    Ragged,
    save_ragged,
    text_features,
    text_split,
)
from models.training.predict import predict_text
from models.types import TEXT_DIM
from models.unimodal import pad_batch


def train_text(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    feats, y, cls, keys = text_split(cache, "train", data_root, cfg.limit)
    variants = []
    for k in range(1, N_TEXT_VARIANTS + 1):
        per_corpus = {}
        for corpus in TEXT_TRAIN_CORPORA:
            rag, extra = text_features(cache, corpus, k, data_root)
            per_corpus[corpus] = (rag, {int(r): i for i, r in enumerate(extra["index"])})
        variants.append(per_corpus)
    vfeats, vy, _, _ = text_split(cache, "valid", data_root, cfg.limit)

    model = TextEncoder(TextEncoderConfig())
    model.init_from_minilm()
    head = [p for n, p in model.named_parameters() if not n.startswith("layers.")]
    opt = torch.optim.AdamW(
        [{"params": model.layers.parameters(), "lr": cfg.text_lr}, {"params": head, "lr": cfg.text_head_lr}],
        weight_decay=1e-2,
    )
    lengths = np.array([len(f) for f in feats])
    steps = cfg.text_epochs * math.ceil(len(feats) / cfg.text_batch)
    sched = one_cycle(opt, steps, [cfg.text_lr, cfg.text_head_lr])
    best = BestWeights(lower_is_better=True)  # a tie keeps the earlier epoch
    for epoch in range(cfg.text_epochs):
        model.train()
        bar = tqdm(length_batches(lengths, cfg.text_batch, rng), desc=f"text epoch {epoch + 1}/{cfg.text_epochs}")
        for b in bar:
            seqs = []
            for j in b:  # LNLN: half the samples complete, the others a dropped copy
                if rng.random() < 0.5:
                    seqs.append(feats[j])
                else:
                    rag, where = variants[int(rng.integers(len(variants)))][keys[j][0]]
                    seqs.append(rag[where[keys[j][1]]])
            x, m = pad_batch(seqs, TEXT_DIM)
            out = model(x, m)
            loss = F.smooth_l1_loss(out["score"], torch.from_numpy(y[b])) + 0.5 * F.cross_entropy(
                out["logits"], torch.from_numpy(cls[b])
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        pred, _ = predict_text(model, vfeats)
        mae = float(np.abs(pred - vy).mean())
        nz = vy != 0
        acc = float(np.mean((pred[nz] > 0) == (vy[nz] > 0)))
        print(f"  valid MOSI+MOSEI: MAE {mae:.3f}  Acc-2 non-0 {100 * acc:.1f}")
        best.update(mae, model)
    best.restore(model)
    checkpoint.save(run / "text_encoder.safetensors", model, model.cfg, valid_mae=best.score)


@torch.no_grad()
def text_states(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/text_states_{corpus}_v{k}.npz: token states (fp16), score and class logits of
    the trained text encoder for every sentence (k = 0) and each dropped copy (k > 0)."""
    model, _ = checkpoint.load(run / "text_encoder.safetensors", TextEncoder, TextEncoderConfig)
    # MELD (clean only): its neutral rows are the words of the neutral-words windows
    todo = [(c, k) for c in TEXT_TRAIN_CORPORA for k in range(N_TEXT_VARIANTS + 1)] + [("meld", 0)]
    for corpus, k in todo:
        rag, extra = text_features(cache, corpus, k, data_root)
        index = extra["index"] if "index" in extra else np.arange(len(rag))
        feats = [rag[i] for i in range(len(rag))]
        order = np.argsort([len(f) for f in feats])
        states: list = [None] * len(feats)
        scores = np.zeros(len(feats), np.float32)
        logits = np.zeros((len(feats), 3), np.float32)
        for i in tqdm(range(0, len(order), 256), desc=f"text states {corpus} v{k}"):
            idx = order[i : i + 256]
            x, m = pad_batch([feats[j] for j in idx], TEXT_DIM)
            out = model(x, m)
            scores[idx] = out["score"].numpy()
            logits[idx] = out["logits"].numpy()
            for row, j in enumerate(idx):
                states[j] = out["states"][row, : len(feats[j])].numpy()
        save_ragged(run / f"text_states_{corpus}_v{k}.npz", Ragged.from_list(states), index=index, score=scores, logits=logits)
