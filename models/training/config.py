"""What a training run is set to, and the small pieces every trainer shares.

In: defaults, and ``--set FIELD=VALUE`` strings from the command line; out: a
``TrainConfig`` that each stage reads (``models.training.train``). Also: fixed seeds
(``seed_all``), length-bucketed shuffled batches (``length_batches``) and the one-cycle
learning-rate schedule (``one_cycle``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from models.encoders.face import FaceEncoderConfig


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
    # fusion: which model the fusion, fusion_head and select stages train (``models.fusion.FUSIONS``)
    fusion_model: str = "lnln"
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
