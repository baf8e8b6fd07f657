"""Train every model from one command: ``python -m models.train``.

Stages (``--stages``, comma separated, default all but face_swa, in this order):
  cache      features of every corpus through the live extractors (``models.featurize``)
  text       text sentiment encoder on CMU-MOSI + CMU-MOSEI train (MOSI scale + 3 classes)
  text_states  the text encoder's outputs for every sentence and dropped copy (for fusion)
  audio      speech emotion encoder on RAVDESS + EmoDB train speakers
  face       facial expression encoder on FER-2013 train
  face_swa   (not by default) stochastic weight averaging of the face encoder
  views      face-encoder outputs of jittered views of every FER-2013 image (for windows)
  domain     in-domain statistics of each encoder's window summaries (``models.domain``)
  calibrate  temperatures of the unimodal encoders on validation data
  fusion     LNLN on composed trimodal windows with LNLN's missing-data scheme
  fusion_head  (not by default) retrains only the fusion's ordinal head on a trained trunk
             (the trunk frozen; an earlier checkpoint's score/class heads are replaced;
             ``--set fusion_head_scope=top`` also retrains the cross block and output norm)
  select     per modality, whether its encoder alone beats the fusion when it is the only
             one present (validation windows); runtime.json's single_modality_fallback
  package    fp16 safetensors + configs into assets/ (then run models.export, models.evaluate)

Everything runs on the CPU with fixed seeds, except that the face stage trains on a CUDA
GPU when one is present (``--device``; initial weights, batch order and augmentation are
drawn on the CPU either way, dropout on the device).
Intermediate weights go to <cache>/run/. ``--set FIELD=VALUE`` overrides a TrainConfig field.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from models import checkpoint
from models.composed import FACE_VIEWS, REALISTIC, TRAINING, ComposedData
from models.data import load_faces, load_speech, load_text
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import FRAME_FLIP, INPUT, FaceEncoder, FaceEncoderConfig, encode_faces, normalise
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.featurize import (
    Ragged,
    N_SPEECH_VARIANTS,
    N_TEXT_VARIANTS,
    TEXT_TRAIN_CORPORA,
    speech_features,
    text_features,
    windows_by_clip,
)
from models.fusion.lnln import LNLN, LNLNConfig, upgrade_state_dict
from models.labels import EMODB_EMOTIONS, EMOTIONS, FER_EMOTIONS, RAVDESS_EMOTIONS, sentiment_index, sentiment_matrix
from models.metrics import fit_temperature
from models.ordinal import fit_spread
from models.missing import SUBSETS, draw_presence, draw_rates, drop_steps
from models.paths import assets_dir, cache_dir
from models.unimodal import UnimodalStack, pad_batch

STAGES = (
    "cache", "text", "text_states", "audio", "face", "face_swa", "views", "domain", "calibrate", "fusion", "fusion_head",
    "select", "package",
)
#: What a plain run does. face_swa is optional: 4 SWA epochs took the validation accuracy
#: from 68.5 to 67.6 in our run, so it is not run unless asked for. fusion_head is for a
#: trunk trained before the ordinal head existed (the fusion stage trains the head itself).
DEFAULT_STAGES = tuple(s for s in STAGES if s not in ("face_swa", "fusion_head"))


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 2
    # text encoder
    text_epochs: int = 4
    text_batch: int = 32
    text_lr: float = 5e-5
    text_head_lr: float = 1e-3
    # speech emotion encoder
    audio_epochs: int = 40
    audio_batch: int = 32
    audio_lr: float = 1e-3
    # face encoder
    # chosen on validation among 22/40/60 epochs, width 32/40, CutMix 0/0.5 (assets/MODEL_CARD.md)
    face_epochs: int = 60
    face_batch: int = 128
    face_lr: float = 0.1
    face_width: int = FaceEncoderConfig.width
    face_cutmix: float = 0.0  # share of batches trained with CutMix (Yun et al. 2019)
    face_bf16: bool = True  # bfloat16 autocast where the hardware has it (see bf16_autocast)
    face_swa_epochs: int = 4  # stochastic weight averaging after the one-cycle schedule
    face_swa_lr: float = 0.01
    # fusion
    fusion_epochs: int = 3  # a 6-epoch run was best on validation after epoch 3
    fusion_batch: int = 64
    fusion_lr: float = 3e-4
    fusion_head_epochs: int = 2
    fusion_head_lr: float = 3e-3
    fusion_head_scope: str = "head"  # "head": the ordinal head alone; "top": also the cross block and output norm
    # smoke runs: cap samples per stage (0 = no cap)
    limit: int = 0
    # where the face stage trains: "cpu" or "cuda" (augmentation and seeds stay on the CPU)
    device: str = "cpu"


def seed_all(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (sorted inside pools of ``pool`` batches)."""
    perm = rng.permutation(len(lengths))
    out = []
    for i in range(0, len(perm), batch * pool):
        chunk = perm[i : i + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[j : j + batch] for j in range(0, len(chunk), batch)]
    rng.shuffle(out)
    return out


def one_cycle(opt, total_steps: int, max_lr, pct: float = 0.1):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(total_steps, 1), pct_start=pct)


# ====================================================================== text
def _text_split(cache: Path, split: str, data_root, limit: int = 0):
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


@torch.no_grad()
def predict_text(model: TextEncoder, feats: list[np.ndarray], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N], class logits [N, 3]) of token feature arrays."""
    model.eval()
    order = np.argsort([len(f) for f in feats])
    scores = np.zeros(len(feats), np.float32)
    logits = np.zeros((len(feats), 3), np.float32)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        x, m = pad_batch([feats[j] for j in idx], 384)
        out = model(x, m)
        scores[idx] = out["score"].numpy()
        logits[idx] = out["logits"].numpy()
    return scores, logits


def train_text(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    feats, y, cls, keys = _text_split(cache, "train", data_root, cfg.limit)
    variants = []
    for k in range(1, N_TEXT_VARIANTS + 1):
        per_corpus = {}
        for corpus in TEXT_TRAIN_CORPORA:
            rag, extra = text_features(cache, corpus, k, data_root)
            per_corpus[corpus] = (rag, {int(r): i for i, r in enumerate(extra["index"])})
        variants.append(per_corpus)
    vfeats, vy, _, _ = _text_split(cache, "valid", data_root, cfg.limit)

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
    best, best_state = np.inf, None
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
            x, m = pad_batch(seqs, 384)
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
        if mae < best:
            best, best_state = mae, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    checkpoint.save(run / "text_encoder.safetensors", model, model.cfg, valid_mae=best)


@torch.no_grad()
def text_states(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/text_states_{corpus}_v{k}.npz: token states (fp16), score and class logits of
    the trained text encoder for every sentence (k = 0) and each dropped copy (k > 0)."""
    from models.featurize import Ragged, save_ragged

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
            x, m = pad_batch([feats[j] for j in idx], 384)
            out = model(x, m)
            scores[idx] = out["score"].numpy()
            logits[idx] = out["logits"].numpy()
            for row, j in enumerate(idx):
                states[j] = out["states"][row, : len(feats[j])].numpy()
        save_ragged(run / f"text_states_{corpus}_v{k}.npz", Ragged.from_list(states), index=index, score=scores, logits=logits)


# ====================================================================== audio
def _speech_tables(cache: Path, data_root):
    """(speech table, clean window features, clip row -> its clean windows, and per
    augmentation (window features, clip row -> its windows))."""
    df = load_speech(data_root)
    clean, extra = speech_features(cache, 0, data_root)
    variants = []
    for k in range(1, N_SPEECH_VARIANTS + 1):
        rag, e = speech_features(cache, k, data_root)
        variants.append((rag, windows_by_clip(e)))
    return df, clean, windows_by_clip(extra), variants


def clip_logits(model: AudioEncoder, feats, by_clip: dict[int, list[int]], rows) -> np.ndarray:
    """Emotion logits [N, 9] of clips: the mean over each clip's windows (each window is
    what the live pipeline would encode)."""
    idx = [i for r in rows for i in by_clip[int(r)]]
    logits = predict_audio(model, [feats[i].astype(np.float32) for i in idx])
    out, k = np.zeros((len(rows), logits.shape[1]), np.float32), 0
    for j, r in enumerate(rows):
        n = len(by_clip[int(r)])
        out[j] = logits[k : k + n].mean(0)
        k += n
    return out


def corpus_emotion_mask(corpus: str) -> np.ndarray:
    """bool [9] over EMOTIONS: the classes a corpus labels (predictions are restricted to them)."""
    names = RAVDESS_EMOTIONS if corpus == "ravdess" else tuple(EMODB_EMOTIONS.values())
    return np.array([e in names for e in EMOTIONS])


@torch.no_grad()
def predict_audio(model: AudioEncoder, seqs: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Emotion logits [N, 9] of whole clips."""
    model.eval()
    out = np.zeros((len(seqs), len(EMOTIONS)), np.float32)
    for i in range(0, len(seqs), batch):
        x, m = pad_batch(seqs[i : i + batch], seqs[0].shape[1])
        out[i : i + batch] = model(x, m)["logits"].numpy()
    return out


def restricted_accuracy(logits: np.ndarray, labels: np.ndarray, corpora: np.ndarray) -> float:
    pred = np.array(
        [np.where(corpus_emotion_mask(c), lg, -np.inf).argmax() for lg, c in zip(logits, corpora)]
    )
    return float(np.mean(pred == labels))


def train_audio(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    df, clean, by_clip, variants = _speech_tables(cache, data_root)
    train_rows = np.flatnonzero(df["split"].to_numpy() == "train")
    valid_rows = np.flatnonzero(df["split"].to_numpy() == "valid")
    if cfg.limit:
        train_rows, valid_rows = train_rows[: cfg.limit], valid_rows[: cfg.limit]
    labels = df["emotion_idx"].to_numpy()

    model = AudioEncoder(AudioEncoderConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.audio_lr, weight_decay=1e-2)
    steps = cfg.audio_epochs * math.ceil(len(train_rows) / cfg.audio_batch)
    sched = one_cycle(opt, steps, cfg.audio_lr, pct=0.15)
    best, best_state = -1.0, None
    for epoch in tqdm(range(cfg.audio_epochs), desc="audio epochs"):
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
        if acc >= best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    print(f"  audio: best valid accuracy {100 * best:.1f}")
    model.load_state_dict(best_state)
    checkpoint.save(run / "audio_encoder.safetensors", model, model.cfg, valid_acc=best)


# ====================================================================== face
def face_augment(x: torch.Tensor, rng: torch.Generator, size: int = INPUT) -> torch.Tensor:
    """Random flip, rotation (+-15 deg), scale, shift, crop to size, brightness / contrast and
    erasing of [N, 1, 48, 48] faces in [0, 1]."""
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=rng)  # noqa: E731
    ang = (u() - 0.5) * 2 * math.radians(15)
    scale = 1 + (u() - 0.5) * 0.3
    tx, ty = (u() - 0.5) * 0.2, (u() - 0.5) * 0.2
    flip = torch.where(u() < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([flip * cos, -sin, tx], 1), torch.stack([flip * sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False) * (size / 48)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    x = x * (1 + (u() - 0.5).view(n, 1, 1, 1) * 0.4) + (u() - 0.5).view(n, 1, 1, 1) * 0.2
    # random erasing of a box in half of the images
    erase = u() < 0.5
    h = torch.randint(8, 20, (n,), generator=rng)
    w = torch.randint(8, 20, (n,), generator=rng)
    r0 = (u() * (size - h)).long()
    c0 = (u() * (size - w)).long()
    rows = torch.arange(size).view(1, size, 1)
    cols = torch.arange(size).view(1, 1, size)
    box = (
        (rows >= r0.view(n, 1, 1))
        & (rows < (r0 + h).view(n, 1, 1))
        & (cols >= c0.view(n, 1, 1))
        & (cols < (c0 + w).view(n, 1, 1))
        & erase.view(n, 1, 1)
    )
    x = torch.where(box.unsqueeze(1), u().view(n, 1, 1, 1), x)
    return x.clamp(0, 1)


def _face_data(cfg: TrainConfig, data_root):
    """(train images [N, 1, 48, 48] in [0, 1], train labels, valid FaceSet, valid labels);
    labels index FER_EMOTIONS."""
    train, valid = load_faces("train", data_root), load_faces("valid", data_root)
    fer_index = {EMOTIONS.index(e): i for i, e in enumerate(FER_EMOTIONS)}
    y = torch.tensor([fer_index[e] for e in train.emotion_idx])
    vy = np.array([fer_index[e] for e in valid.emotion_idx])
    x_all = torch.from_numpy(train.images).float().div(255).unsqueeze(1)
    if cfg.limit:
        x_all, y = x_all[: cfg.limit * 8], y[: cfg.limit * 8]
    return x_all, y, valid, vy


def cutmix(x: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019) of a batch [N, C, H, W]: one box, side ratio sqrt(1 - lam)
    with lam ~ U(0, 1), pasted from a shuffled copy. Returns (mixed batch, partner index,
    lam = share of each image that is its own after clipping the box)."""
    n, _, h, w = x.shape
    partner = torch.randperm(n, generator=rng)
    lam = float(torch.rand(1, generator=rng))
    bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=rng)), int(torch.randint(w, (1,), generator=rng))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[partner, :, y0:y1, x0:x1]
    return x, partner, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def bf16_autocast(device_type: str) -> bool:
    """Whether bfloat16 autocast speeds training up on ``device_type``: always on CUDA; on a
    CPU only with AVX512-BF16 or AMX, where it was about 2x faster. Without them PyTorch
    emulates bf16 and a face epoch took 2.8x longer than in float32 (678 s against 243 s
    on a 2-core Xeon with plain AVX-512)."""
    if device_type != "cpu":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _face_epoch(cfg: TrainConfig, model: FaceEncoder, opt, x_all, y, gen, desc: str, sched=None) -> None:
    """One epoch of augmented, label-smoothed cross-entropy over the training faces
    (a ``cfg.face_cutmix`` share of batches CutMixed). Batch order, augmentation and CutMix
    come from ``gen`` on the CPU whatever ``cfg.device`` is, so a seed gives the same batches
    on every device (dropout draws on the device)."""
    model.train()
    device = torch.device(cfg.device)
    bf16 = cfg.face_bf16 and bf16_autocast(device.type)
    perm = torch.randperm(len(x_all), generator=gen)
    bar = tqdm(range(0, len(perm), cfg.face_batch), desc=desc)
    for i in bar:
        b = perm[i : i + cfg.face_batch]
        x, yb = normalise(face_augment(x_all[b], gen)), y[b]
        mixed = cfg.face_cutmix > 0 and float(torch.rand(1, generator=gen)) < cfg.face_cutmix
        if mixed:
            x, partner, lam = cutmix(x, gen)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        yb = yb.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)["logits"].float()
        loss = F.cross_entropy(logits, yb, label_smoothing=0.1)
        if mixed:
            loss = lam * loss + (1 - lam) * F.cross_entropy(logits, yb[partner.to(device)], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")


def train_face(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    x_all, y, valid, vy = _face_data(cfg, data_root)
    model = FaceEncoder(FaceEncoderConfig(width=cfg.face_width)).to(cfg.device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.face_lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = cfg.face_epochs * math.ceil(len(x_all) / cfg.face_batch)
    sched = one_cycle(opt, steps, cfg.face_lr, pct=0.2)
    best, best_state = -1.0, None
    for epoch in range(cfg.face_epochs):
        _face_epoch(cfg, model, opt, x_all, y, gen, f"face epoch {epoch + 1}/{cfg.face_epochs}", sched)
        acc = float(np.mean(encode_faces(model, valid.images, flip=True, device=cfg.device)["logits"].argmax(1) == vy))
        print(f"  face valid accuracy {100 * acc:.1f}")
        if acc >= best:
            best, best_state, best_epoch = acc, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, epoch + 1
    model = model.cpu()
    model.load_state_dict(best_state)
    checkpoint.save(
        run / "face_encoder.safetensors", model, model.cfg, valid_acc=best, epoch=best_epoch, epochs=cfg.face_epochs, device=cfg.device
    )


def refit_batchnorm(model: FaceEncoder, x_all: torch.Tensor, batch: int = 512) -> None:
    """Recompute BatchNorm running statistics over the (centre-cropped) training faces."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average
    model.train()
    lo = (x_all.shape[-1] - INPUT) // 2
    with torch.no_grad():
        for i in tqdm(range(0, len(x_all), batch), desc="face swa batchnorm", leave=False):
            x = normalise(x_all[i : i + batch, :, lo : lo + INPUT, lo : lo + INPUT])
            model(x.contiguous(memory_format=torch.channels_last))
    model.eval()


def face_swa(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """Stochastic weight averaging (Izmailov et al. 2018) on top of the trained face encoder:
    ``face_swa_epochs`` epochs of SGD at a constant small learning rate, weights averaged at
    the end of each epoch, BatchNorm statistics recomputed. Kept only if validation improves."""
    seed_all(cfg.seed + 3)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    model, meta = checkpoint.load(run / "face_encoder.safetensors", FaceEncoder, FaceEncoderConfig)
    model = model.to(cfg.device, memory_format=torch.channels_last)
    base = float(meta.get("valid_acc", -1.0))
    if meta.get("swa_epochs"):
        print("  face encoder already has SWA; skipping")
        return
    x_all, y, valid, vy = _face_data(cfg, data_root)
    avg = torch.optim.swa_utils.AveragedModel(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.face_swa_lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for epoch in range(cfg.face_swa_epochs):
        _face_epoch(cfg, model, opt, x_all, y, gen, f"face swa epoch {epoch + 1}/{cfg.face_swa_epochs}")
        avg.update_parameters(model)
    swa = avg.module.cpu()
    refit_batchnorm(swa, x_all)
    acc = float(np.mean(encode_faces(swa, valid.images, flip=True)["logits"].argmax(1) == vy))
    print(f"  face valid accuracy: before SWA {100 * base:.1f}, after {100 * acc:.1f}")
    if acc > base:
        checkpoint.save(run / "face_encoder.safetensors", swa, swa.cfg, valid_acc=acc, swa_epochs=cfg.face_swa_epochs)
    else:
        print("  SWA did not help on validation; keeping the one-cycle weights")


def jitter_views(images: np.ndarray, n_views: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, n_views, 48, 48]: view 0 the image, the others small head movements
    (rotation +-8 deg, shift +-2 px, scale +-5 %) and lighting changes (+-10 %)."""
    import cv2

    out = np.empty((len(images), n_views) + images.shape[1:], np.uint8)
    out[:, 0] = images
    for i, img in enumerate(images):
        for v in range(1, n_views):
            m = cv2.getRotationMatrix2D((23.5, 23.5), rng.uniform(-8, 8), rng.uniform(0.95, 1.05))
            m[:, 2] += rng.uniform(-2, 2, 2)
            w = cv2.warpAffine(img, m, (48, 48), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            w = w * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12)
            out[i, v] = np.clip(w, 0, 255).astype(np.uint8)
    return out


def face_view_features(model: FaceEncoder, images: np.ndarray, rng: np.random.Generator, n_total: int | None = None, desc: str = "face views") -> np.ndarray:
    """fp16 [n_total or N, FACE_VIEWS, 135]: face-encoder embedding + logits of FACE_VIEWS
    jittered views (``jitter_views``) of each uint8 [N, 48, 48] image; rows past N stay zero."""
    out = np.zeros((n_total or len(images), FACE_VIEWS, 135), np.float16)
    for i in tqdm(range(0, len(images), 2048), desc=desc):
        views = jitter_views(images[i : i + 2048], FACE_VIEWS, rng)
        n = len(views)
        pred = encode_faces(model, views.reshape(-1, 48, 48), flip=FRAME_FLIP)
        out[i : i + n] = np.concatenate([pred["emb"], pred["logits"]], 1).reshape(n, FACE_VIEWS, 135)
    return out


def face_views(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/face_views_{split}.npy: [N, FACE_VIEWS, 135] face-encoder emb + logits (fp16)."""
    model, _ = checkpoint.load(run / "face_encoder.safetensors", FaceEncoder, FaceEncoderConfig)
    rng = np.random.default_rng(cfg.seed + 3)
    for split in ("train", "valid", "test"):
        faces = load_faces(split, data_root)
        imgs = faces.images[: cfg.limit * 8] if cfg.limit else faces.images
        out = face_view_features(model, imgs, rng, len(faces), desc=f"face views {split}")
        np.save(run / f"face_views_{split}.npy", out)


# ====================================================================== in-domain statistics
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
    df, clean, by_clip, variants = _speech_tables(cache, data_root)
    split_of = df["split"].to_numpy()

    def whisper_mean(rag, i):
        return rag[i][:, :384].astype(np.float32).mean(0)

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
        summaries["v", split] = views[:, :, :128].astype(np.float32).mean(1)
    stats = {}
    for k in domain.KEYS:
        stats[k] = domain.fit(summaries[k, "train"], summaries[k, "valid"])
        print(f"  in-domain {k}: d50 {stats[k]['ref'][0]:.2f}, d95 {stats[k]['ref'][1]:.2f} (validation)")
    domain.save(run / "domain.safetensors", stats)


# ====================================================================== calibration
def load_stack(run: Path) -> UnimodalStack:
    text, _ = checkpoint.load(run / "text_encoder.safetensors", TextEncoder, TextEncoderConfig)
    audio, _ = checkpoint.load(run / "audio_encoder.safetensors", AudioEncoder, AudioEncoderConfig)
    face, _ = checkpoint.load(run / "face_encoder.safetensors", FaceEncoder, FaceEncoderConfig)
    stack = UnimodalStack(text, audio, face).eval()
    calib = run / "calibration.json"
    if calib.exists():
        c = json.loads(calib.read_text())
        stack.temperature.copy_(torch.tensor(c["unimodal_temperature"]))
        stack.class_scores.copy_(torch.tensor(c["class_scores"]))
        if "unimodal_spread" in c:
            stack.spread.copy_(torch.tensor(c["unimodal_spread"]))
    if (run / "domain.safetensors").exists():
        from models import domain

        stack.load_domain(domain.load(run / "domain.safetensors"))
    return stack


def calibrate(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """Temperatures of the text classes, audio emotions and face emotions on validation data,
    and the mean text score of each sentiment class (train)."""
    stack = load_stack(run)
    feats, _, vcls, _ = _text_split(cache, "valid", data_root, cfg.limit)
    t_scores, t_logits = predict_text(stack.text, feats)
    t_temp = fit_temperature(t_logits, vcls)

    df, clean, by_clip, _ = _speech_tables(cache, data_root)
    clips = np.flatnonzero(df["split"].to_numpy() == "valid")
    # per window, as live: every window of every validation clip with its clip's label
    rows = np.array([r for r in clips for _ in by_clip[int(r)]])
    a_logits = predict_audio(stack.audio, [clean[i].astype(np.float32) for r in clips for i in by_clip[int(r)]])
    a_temp = fit_temperature(a_logits, df["emotion_idx"].to_numpy()[rows])

    valid = load_faces("valid", data_root)
    names = FER_EMOTIONS
    fy = np.array([names.index(EMOTIONS[e]) for e in valid.emotion_idx])
    views = np.load(run / "face_views_valid.npy").astype(np.float32)
    f_temp = fit_temperature(views[:, :, 128:].reshape(-1, len(names)), np.repeat(fy, views.shape[1]))

    _, ty, tcls, _ = _text_split(cache, "train", data_root)
    class_scores = [float(ty[tcls == c].mean()) for c in range(3)]
    prior = [float(np.mean(tcls == c)) for c in range(3)]

    # ordinal spread of each modality's own estimate (``models.ordinal``), on the same
    # validation data, the scores computed as ``UnimodalStack`` computes them
    t_spread = fit_spread(np.clip(t_scores, -3, 3), vcls)
    cs = np.array(class_scores)
    a_sent = torch.softmax(torch.from_numpy(a_logits) / a_temp, -1).numpy() @ sentiment_matrix(EMOTIONS)
    a_cls = np.array([sentiment_index(EMOTIONS[e]) for e in df["emotion_idx"].to_numpy()[rows]])
    a_spread = fit_spread((a_sent @ cs)[a_cls >= 0], a_cls[a_cls >= 0])
    f_probs = torch.softmax(torch.from_numpy(views[:, :, 128:]) / f_temp, -1).mean(1).numpy()  # a window's mean
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


# ====================================================================== fusion
def fusion_inputs(s: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The positional inputs of LNLN from a UnimodalStack output."""
    return tuple(
        s[k] for k in ("text", "text_valid", "audio", "audio_valid", "vision", "vision_valid", "evidence", "present")
    )


def valid_conditions(data: ComposedData, seed: int):
    """Fixed validation batches, composed the realistic way (``models.composed.REALISTIC``):
    rates 0 / 0.5 / 0.9 (all modalities) and the six partial subsets."""
    rng = np.random.default_rng(seed)
    specs = data.compose(rng, how=REALISTIC)
    conds = [(r, SUBSETS[0]) for r in (0.0, 0.5, 0.9)] + [(0.0, s) for s in SUBSETS[1:]]
    out = []
    for rate, subset in conds:
        override = data.text_at_rate(specs, rate, seed) if rate > 0 else None
        out.append((rate, subset, specs, override))
    return out


def train_fusion(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    seed_all(cfg.seed + 4)
    rng = np.random.default_rng(cfg.seed + 4)
    stack = load_stack(run)
    train = ComposedData(
        "train", cache, np.load(run / "face_views_train.npy"), data_root, augmented=True, text_states=run
    )
    valid = ComposedData("valid", cache, np.load(run / "face_views_valid.npy"), data_root)
    # validation: the unimodal stack is frozen, so its outputs are computed once
    vbatches = _fusion_valid_batches(cfg, stack, valid)

    model = LNLN(LNLNConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.fusion_lr, weight_decay=1e-4)
    n_train = len(train) if not cfg.limit else min(len(train), cfg.limit * 8)
    steps = cfg.fusion_epochs * math.ceil(n_train / cfg.fusion_batch)
    sched = one_cycle(opt, steps, cfg.fusion_lr, pct=0.1)
    c = model.cfg
    best, best_state = np.inf, None
    for epoch in range(cfg.fusion_epochs):
        model.train()
        specs = train.compose(rng, rng.permutation(len(train))[:n_train], TRAINING)
        bar = tqdm(range(0, len(specs), cfg.fusion_batch), desc=f"fusion epoch {epoch + 1}/{cfg.fusion_epochs}")
        for i in bar:
            sp = specs[i : i + cfg.fusion_batch]
            n = len(sp)
            rates, presence = draw_rates(n, rng), draw_presence(n, rng)
            clean_b, _ = train.batch(sp, np.zeros((n, 3)), np.ones((n, 3), bool), rng)
            noisy_b, text_rate = train.batch(sp, rates, presence, rng, augment=True)
            s_clean, s_noisy = stack(clean_b), stack(noisy_b)
            out = model(*fusion_inputs(s_noisy))
            with torch.no_grad():
                ref = model.encode(*fusion_inputs(s_clean))
            y = torch.tensor([s.score for s in sp])
            cls = torch.tensor([s.cls for s in sp])
            task = F.smooth_l1_loss(out["score"], y) + F.cross_entropy(out["logits"], cls)
            completeness = F.mse_loss(out["completeness"], 1.0 - torch.from_numpy(text_rate))
            real = model.discriminate(ref[0])
            fake = model.discriminate(out["h_d"], reverse=1.0)
            adversarial = F.cross_entropy(real, torch.ones(n, dtype=torch.long)) + F.cross_entropy(
                fake, torch.zeros(n, dtype=torch.long)
            )
            pres = s_noisy["present"].float()
            recon = 0.0
            for m, key in enumerate(("h_t", "h_a", "h_v")):
                err = ((model.reconstruct(m, out[key]) - ref[m]) ** 2).mean((1, 2))
                recon = recon + (err * pres[:, m]).sum() / pres[:, m].sum().clamp_min(1)
            loss = task + c.w_completeness * completeness + c.w_adversarial * adversarial + c.w_reconstruction * recon
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.set_postfix(task=f"{task.item():.3f}", adv=f"{adversarial.item():.3f}")
        score = _fusion_valid(model, vbatches)
        print(f"  fusion valid: mean MAE + (1 - Acc-3) over conditions {score:.4f}")
        if score < best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    _save_fusion(model, vbatches, run, best, head="ordinal")


def _fusion_valid_batches(cfg: TrainConfig, stack: UnimodalStack, valid: ComposedData) -> list:
    """(stack outputs, scores, classes) of the fixed validation conditions (``valid_conditions``)."""
    vbatches = []
    for rate, subset, specs, override in valid_conditions(valid, cfg.seed + 5):
        vrng = np.random.default_rng(cfg.seed + 6)
        for i in range(0, len(specs), 256):
            sp = specs[i : i + 256]
            presence = np.tile(np.array(subset, bool), (len(sp), 1))
            rates = np.full((len(sp), 3), rate)
            b, _ = valid.batch(sp, rates, presence, vrng, None if override is None else override[i : i + 256])
            vbatches.append((stack(b), torch.tensor([s.score for s in sp]), torch.tensor([s.cls for s in sp])))
    return vbatches


def train_fusion_head(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """Retrains only the ordinal head of <run>/fusion.safetensors (an earlier checkpoint's
    separate score and class heads are first replaced, ``upgrade_state_dict``): the trunk is
    frozen and runs in eval mode, the head learns from the trunk's pooled output on the
    training windows, drawn with the same missing-data scheme as the fusion stage; loss
    smooth-L1 on the score + cross-entropy of the ordinal class logits; the best epoch on the
    validation conditions is kept and the class temperature refitted there."""
    seed_all(cfg.seed + 8)
    rng = np.random.default_rng(cfg.seed + 8)
    stack = load_stack(run)
    sd, meta = checkpoint.read(run / "fusion.safetensors")
    model = LNLN(LNLNConfig(**meta["config"]) if "config" in meta else LNLNConfig())
    model.load_state_dict(upgrade_state_dict(sd), strict=True)
    if cfg.fusion_head_scope not in ("head", "top"):
        raise ValueError(f"fusion_head_scope must be head or top, not {cfg.fusion_head_scope!r}")
    top = [model.head] if cfg.fusion_head_scope == "head" else [model.head, model.cross, model.out_norm]
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [p for mod in top for p in mod.parameters()]
    for p in trained:
        p.requires_grad_(True)
    train = ComposedData(
        "train", cache, np.load(run / "face_views_train.npy"), data_root, augmented=True, text_states=run
    )
    valid = ComposedData("valid", cache, np.load(run / "face_views_valid.npy"), data_root)
    vbatches = _fusion_valid_batches(cfg, stack, valid)
    opt = torch.optim.AdamW(trained, lr=cfg.fusion_head_lr, weight_decay=1e-4)
    n_train = len(train) if not cfg.limit else min(len(train), cfg.limit * 8)
    steps = cfg.fusion_head_epochs * math.ceil(n_train / cfg.fusion_batch)
    sched = one_cycle(opt, steps, cfg.fusion_head_lr, pct=0.1)
    best, best_state = _fusion_valid(model, vbatches), {k: v.clone() for k, v in model.state_dict().items()}
    print(f"  fusion head valid before training: {best:.4f}")
    for epoch in range(cfg.fusion_head_epochs):
        specs = train.compose(rng, rng.permutation(len(train))[:n_train], TRAINING)
        bar = tqdm(range(0, len(specs), cfg.fusion_batch), desc=f"fusion head epoch {epoch + 1}/{cfg.fusion_head_epochs}")
        for i in bar:
            sp = specs[i : i + cfg.fusion_batch]
            n = len(sp)
            b, _ = train.batch(sp, draw_rates(n, rng), draw_presence(n, rng), rng, augment=True)
            model.eval()
            for mod in top:
                mod.train()
            if cfg.fusion_head_scope == "head":  # the frozen trunk needs no graph
                with torch.no_grad():
                    z = model.trunk(*fusion_inputs(stack(b)))["z"]
                out = model.ordinal(z)
            else:
                out = model(*fusion_inputs(stack(b)))
            y = torch.tensor([s.score for s in sp])
            cls = torch.tensor([s.cls for s in sp])
            loss = F.smooth_l1_loss(out["score"], y) + F.cross_entropy(out["logits"], cls)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        score = _fusion_valid(model, vbatches)
        print(f"  fusion head valid: mean MAE + (1 - Acc-3) over conditions {score:.4f}")
        if score < best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    _save_fusion(model, vbatches, run, best, **{k: v for k, v in meta.items() if k not in ("config", "temperature", "conflict_gain", "valid_score", "head")}, head=f"ordinal, retrained on a frozen trunk ({cfg.fusion_head_scope})")


def _save_fusion(model: LNLN, vbatches, run: Path, valid_score: float, **meta) -> None:
    """Fits the class temperature and the conflict gain (``models.agreement.fit``) on the
    validation windows and writes <run>/fusion.safetensors."""
    from models.agreement import fit as fit_agreement

    model.eval()
    parts = {k: [] for k in ("score", "spread", "est", "observed", "weight", "cls")}
    with torch.no_grad():  # (without it the graphs of every batch are kept: 20+ GB)
        for st, _, c in vbatches:
            out = model(*fusion_inputs(st))
            parts["score"].append(out["score"].numpy())
            parts["spread"].append(out["spread"].numpy())
            parts["est"].append(np.stack([st[f"est_{k}_score"].numpy() for k in "tav"], 1))
            parts["observed"].append(st["observed"].numpy())
            parts["weight"].append(st["in_domain"].numpy())
            parts["cls"].append(c.numpy())
    p = {k: np.concatenate(v) for k, v in parts.items()}
    temp, gain = fit_agreement(p["score"], p["spread"], p["est"], p["observed"], p["weight"], p["cls"])
    print(f"  fusion class temperature {temp:.3f}, conflict gain {gain:.2f}")
    checkpoint.save(
        run / "fusion.safetensors", model, model.cfg, valid_score=valid_score, temperature=temp, conflict_gain=gain, **meta
    )


@torch.no_grad()
def _fusion_valid(model: LNLN, vbatches) -> float:
    model.eval()
    maes, accs = [], []
    for s, y, c in vbatches:
        out = model(*fusion_inputs(s))
        maes.append((out["score"].clamp(-3, 3) - y).abs())
        accs.append((out["logits"].argmax(1) == c).float())
    return float(torch.cat(maes).mean() + 1 - torch.cat(accs).mean())


# ====================================================================== selection
def select(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/selection.json: for each modality, whether its own encoder beats the fusion
    model on validation windows where it is the only modality present (criterion as in
    fusion training: MAE + (1 - Acc-3)). Those go to runtime.json as
    ``single_modality_fallback``; ``SentimentModel.fuse`` then answers with the encoder."""
    from models.runtime import SentimentModel
    from models.types import MODALITIES

    stack = load_stack(run)
    fusion, fmeta = checkpoint.load(run / "fusion.safetensors", LNLN, LNLNConfig)
    calib = json.loads((run / "calibration.json").read_text())
    model = SentimentModel(
        stack, fusion, {**calib, "fusion_temperature": fmeta["temperature"], "conflict_gain": fmeta.get("conflict_gain", 0.0)}
    )
    valid = ComposedData("valid", cache, np.load(run / "face_views_valid.npy"), data_root)
    specs = valid.compose(np.random.default_rng(cfg.seed + 5), how=REALISTIC)
    if cfg.limit:
        specs = specs[: cfg.limit * 8]
    y = np.array([sp.score for sp in specs])
    cls = np.array([sp.cls for sp in specs])
    out = {"single_modality_fallback": [], "validation": {}}
    for m, mod in enumerate(MODALITIES):
        subset = np.zeros(3, bool)
        subset[m] = True
        rng = np.random.default_rng(cfg.seed + 6)
        f_s, f_p, u_s, u_p = [], [], [], []
        for i in tqdm(range(0, len(specs), 256), desc=f"select: {mod.value} alone", leave=False):
            sp = specs[i : i + 256]
            b, _ = valid.batch(sp, np.zeros((len(sp), 3)), np.tile(subset, (len(sp), 1)), rng)
            with torch.no_grad():
                st = model.stack(b)
                sc, pr = model.fuse(st)
            f_s.append(sc)
            f_p.append(pr.argmax(1))
            u_s.append(st[f"est_{'tav'[m]}_score"].numpy())
            u_p.append(st[f"est_{'tav'[m]}_probs"].argmax(1).numpy())
        crit = {}
        for name, sc, pc in (("fusion", f_s, f_p), ("encoder", u_s, u_p)):
            mae = float(np.abs(np.concatenate(sc) - y).mean())
            acc = float(np.mean(np.concatenate(pc) == cls))
            crit[name] = {"mae": round(mae, 4), "acc3": round(100 * acc, 2), "criterion": round(mae + 1 - acc, 4)}
        out["validation"][mod.value] = crit
        if crit["encoder"]["criterion"] < crit["fusion"]["criterion"]:
            out["single_modality_fallback"].append(mod.value)
    (run / "selection.json").write_text(json.dumps(out, indent=2))
    print("  selection:", json.dumps(out))


# ====================================================================== package
def package(cfg: TrainConfig, cache: Path, run: Path, data_root, assets: Path) -> None:
    """fp16 safetensors of the four models and runtime.json (calibration, prior) into assets/."""
    weights = assets / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    from models.runtime import SHIPPED

    for name, classes in SHIPPED.items():
        model, meta = checkpoint.load(run / f"{name}.safetensors", *classes)
        meta.pop("config", None)
        checkpoint.save(weights / f"{name}.safetensors", model, model.cfg, half=True, **meta)
    shutil.copyfile(run / "domain.safetensors", weights / "domain.safetensors")  # float32: precision matrices
    calib = json.loads((run / "calibration.json").read_text())
    _, fmeta = checkpoint.read(run / "fusion.safetensors")
    calib["fusion_temperature"] = fmeta["temperature"]
    calib["conflict_gain"] = fmeta.get("conflict_gain", 0.0)
    sel = run / "selection.json"
    calib["single_modality_fallback"] = json.loads(sel.read_text())["single_modality_fallback"] if sel.exists() else []
    calib["train_config"] = asdict(cfg)
    (assets / "runtime.json").write_text(json.dumps(calib, indent=2))
    print(f"  wrote {weights} and {assets / 'runtime.json'}")


def cache_features(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    from models.features.audio import AudioFeatureExtractor

    for corpus in TEXT_TRAIN_CORPORA:
        for k in range(N_TEXT_VARIANTS + 1):
            text_features(cache, corpus, k, data_root)  # MiniLM loads on the first miss only
    aex = AudioFeatureExtractor(threads=cfg.threads)
    for k in range(N_SPEECH_VARIANTS + 1):
        speech_features(cache, k, data_root, aex)


def _without_assets(fn):
    return lambda cfg, cache, run, data_root, assets: fn(cfg, cache, run, data_root)


STAGE_FUNCTIONS = {
    "cache": _without_assets(cache_features),
    "text": _without_assets(train_text),
    "text_states": _without_assets(text_states),
    "audio": _without_assets(train_audio),
    "face": _without_assets(train_face),
    "face_swa": _without_assets(face_swa),
    "views": _without_assets(face_views),
    "domain": _without_assets(fit_domain),
    "calibrate": _without_assets(calibrate),
    "fusion": _without_assets(train_fusion),
    "fusion_head": _without_assets(train_fusion_head),
    "select": _without_assets(select),
    "package": package,
}


# ====================================================================== main
def apply_overrides(cfg: TrainConfig, items: list[str]) -> None:
    """Applies "field=value" strings to ``cfg``, each value parsed as its field's type."""
    types = {f.name: f.type for f in fields(cfg)}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        kind = {"int": int, "float": float, "str": str, "bool": bool}[str(types[name])]  # annotations are strings here
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {name} takes true or false")
            parsed = value.lower() in ("true", "1")
        else:
            try:
                parsed = kind(value)
            except ValueError:
                raise ValueError(f"--set {item!r}: {name} takes a {kind.__name__}") from None
        setattr(cfg, name, parsed)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--data", help="data root (default ../shared/data or $MSA_DATA_ROOT)")
    ap.add_argument("--cache", help="feature cache and run folder (default .cache/)")
    ap.add_argument("--assets", help="where package writes (default assets/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="cap samples per stage for a smoke run")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every stage's epochs")
    ap.add_argument(
        "--device", default="auto", choices=("cpu", "cuda", "auto"), help="where the face stage trains (auto: cuda if present)"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override a TrainConfig field, e.g. face_epochs=40"
    )
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = set(stages) - set(STAGES)
    if bad:
        ap.error(f"unknown stages {sorted(bad)}")
    cfg = TrainConfig(seed=args.seed, limit=args.limit)
    if any(item.partition("=")[0].strip() == "device" for item in args.set):
        ap.error("the face stage's device is set with --device, not --set")
    try:
        apply_overrides(cfg, args.set)
    except ValueError as e:
        ap.error(str(e))
    cfg.device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if cfg.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if args.epochs_scale != 1.0:
        for f in ("text_epochs", "audio_epochs", "face_epochs", "fusion_epochs"):
            setattr(cfg, f, max(1, round(getattr(cfg, f) * args.epochs_scale)))
    torch.set_num_threads(cfg.threads)
    cache = cache_dir(args.cache)
    run = cache / "run"
    run.mkdir(parents=True, exist_ok=True)
    data_root = args.data
    timings = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.time()
        print(f"== {stage}")
        STAGE_FUNCTIONS[stage](cfg, cache, run, data_root, assets_dir(args.assets))
        timings[stage] = round(time.time() - t0, 1)
        print(f"   {stage} took {timings[stage]:.0f} s")
    log = run / "timings.json"
    old = json.loads(log.read_text()) if log.exists() else {}
    old.update(timings)
    log.write_text(json.dumps(old, indent=2))
    print("timings (s):", json.dumps(timings))


if __name__ == "__main__":
    main()
