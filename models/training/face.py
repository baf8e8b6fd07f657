"""The face stages: the expression encoder on FER-2013, its optional SWA, its view cache.

In: FER-2013 train and valid images (``models.training.data.load_faces``); out:
- <run>/face_encoder.safetensors (``train_face``): SGD with a one-cycle schedule on
  augmented faces (``face_augment``: flip, rotation, scale, shift, lighting, erasing; a
  ``face_cutmix`` share of batches CutMixed, ``cutmix``), bfloat16 autocast where the
  hardware has it (``bf16_autocast``); the epoch with the best validation accuracy (a tie
  takes the later epoch);
- the same file replaced by stochastic weight averaging (``face_swa``, not run by default)
  when that beats it on validation, BatchNorm statistics recomputed (``refit_batchnorm``);
- <run>/face_views_{split}.npy (``face_views``): the encoder's embedding + logits of
  jittered views of every image (``models.training.predict.face_view_features``).
The face stage trains on ``cfg.device``; batch order, augmentation and CutMix are drawn
on the CPU, so a seed gives the same batches on every device.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import checkpoint
from models.encoders.face import (
    INPUT,
    FaceEncoder,
    FaceEncoderConfig,
    encode_faces,
    normalise,
)
from models.labels import EMOTIONS, FER_EMOTIONS
from models.training.best import BestWeights
from models.training.config import TrainConfig, one_cycle, seed_all
from models.training.data import load_faces
from models.training.predict import face_view_features


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
    best = BestWeights(lower_is_better=False, take_ties=True)  # a tie takes the later epoch
    for epoch in range(cfg.face_epochs):
        _face_epoch(cfg, model, opt, x_all, y, gen, f"face epoch {epoch + 1}/{cfg.face_epochs}", sched)
        acc = float(np.mean(encode_faces(model, valid.images, flip=True, device=cfg.device)["logits"].argmax(1) == vy))
        print(f"  face valid accuracy {100 * acc:.1f}")
        if best.update(acc, model):
            best_epoch = epoch + 1
    model = model.cpu()
    best.restore(model)
    checkpoint.save(
        run / "face_encoder.safetensors",
        model,
        model.cfg,
        valid_acc=best.score,
        epoch=best_epoch,
        epochs=cfg.face_epochs,
        device=cfg.device,
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


def face_views(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/face_views_{split}.npy: [N, FACE_VIEWS, VISION_DIM] face-encoder emb + logits (fp16)."""
    model, _ = checkpoint.load(run / "face_encoder.safetensors", FaceEncoder, FaceEncoderConfig)
    rng = np.random.default_rng(cfg.seed + 3)
    for split in ("train", "valid", "test"):
        faces = load_faces(split, data_root)
        imgs = faces.images[: cfg.limit * 8] if cfg.limit else faces.images
        out = face_view_features(model, imgs, rng, len(faces), desc=f"face views {split}")
        np.save(run / f"face_views_{split}.npy", out)
