"""The fusion stages: a fusion model (``TrainConfig.fusion_model``: lnln, dashfusion or hme,
``models.fusion.FUSIONS``) on composed trimodal windows, LNLN's ordinal head, and the
single-modality selection. The three models share everything here: data, composition,
missing-data scheme, task loss, validation criterion and calibration; each adds its own
losses (``auxiliary_loss``, ``models.fusion.base``).

In: a run folder with the trained encoders, calibration, in-domain statistics and face
views (``load_stack``), and composed windows (``models.training.composed``) with LNLN's
missing-data scheme (``models.training.missing``); out:
- <run>/<stem>.safetensors (``train_fusion``; stem ``fusion`` for LNLN,
  ``fusion_dashfusion``, ``fusion_hme``): the epoch with the lowest validation criterion,
  mean MAE + (1 - Acc-3) over fixed conditions (``valid_conditions``; a tie keeps the
  earlier epoch), with the class temperature and conflict gain fitted on them;
- the same file with only the ordinal head retrained on the frozen trunk
  (``train_fusion_head``, not run by default);
- <run>/selection.json (LNLN) or selection_<name>.json (``select``): the modalities whose own encoder beats the fusion
  when it is the only one present (runtime.json's ``single_modality_fallback``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from models import checkpoint
from models.fusion import fusion_spec
from models.fusion.lnln import LNLN, LNLNConfig, upgrade_state_dict
from models.training.best import BestWeights
from models.training.composed import REALISTIC, TRAINING, ComposedData
from models.training.config import TrainConfig, one_cycle, seed_all
from models.training.missing import SUBSETS, draw_presence, draw_rates
from models.training.predict import load_stack
from models.unimodal import UnimodalStack


def valid_conditions(data: ComposedData, seed: int):
    """Fixed validation batches, composed the realistic way
    (``models.training.composed.REALISTIC``): rates 0 / 0.5 / 0.9 (all modalities) and the
    six partial subsets."""
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
    train = ComposedData("train", cache, np.load(run / "face_views_train.npy"), data_root, augmented=True, text_states=run)
    valid = ComposedData("valid", cache, np.load(run / "face_views_valid.npy"), data_root)
    # validation: the unimodal stack is frozen, so its outputs are computed once
    vbatches = _fusion_valid_batches(cfg, stack, valid)

    spec = fusion_spec(cfg.fusion_model)
    model = spec.model(spec.config())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.fusion_lr, weight_decay=1e-4)
    n_train = len(train) if not cfg.limit else min(len(train), cfg.limit * 8)
    steps = cfg.fusion_epochs * math.ceil(n_train / cfg.fusion_batch)
    sched = one_cycle(opt, steps, cfg.fusion_lr, pct=0.1)
    best = BestWeights(lower_is_better=True)  # a tie keeps the earlier epoch
    for epoch in range(cfg.fusion_epochs):
        model.train()
        specs = train.compose(rng, rng.permutation(len(train))[:n_train], TRAINING)
        bar = tqdm(range(0, len(specs), cfg.fusion_batch), desc=f"{spec.name} epoch {epoch + 1}/{cfg.fusion_epochs}")
        for i in bar:
            sp = specs[i : i + cfg.fusion_batch]
            n = len(sp)
            rates, presence = draw_rates(n, rng), draw_presence(n, rng)
            clean_b, _ = train.batch(sp, np.zeros((n, 3)), np.ones((n, 3), bool), rng)
            noisy_b, text_rate = train.batch(sp, rates, presence, rng, augment=True)
            s_clean, s_noisy = stack(clean_b), stack(noisy_b)
            out = model(*s_noisy.fusion)
            y = torch.tensor([s.score for s in sp])
            cls = torch.tensor([s.cls for s in sp])
            task = F.smooth_l1_loss(out["score"], y) + F.cross_entropy(out["logits"], cls)
            extra = model.auxiliary_loss(out, s_clean.fusion, y, cls, torch.from_numpy(text_rate), s_noisy.present)
            loss = task + extra
            extra = extra.detach()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            model.after_step(s_clean.fusion)
            bar.set_postfix(task=f"{task.item():.3f}", extra=f"{extra.item():.3f}")
        score = _fusion_valid(model, vbatches)
        print(f"  {spec.name} valid: mean MAE + (1 - Acc-3) over conditions {score:.4f}")
        best.update(score, model)
    best.restore(model)
    model.finish_training(_clean_batches(train, cfg, stack, np.random.default_rng(cfg.seed + 7)))
    score = _fusion_valid(model, vbatches)
    if score != best.score:
        print(f"  {spec.name} valid after finish_training: {score:.4f}")
    _save_fusion(model, vbatches, run, score, head="ordinal", stem=spec.stem, fusion=spec.name)


def _clean_batches(data: ComposedData, cfg: TrainConfig, stack: UnimodalStack, rng: np.random.Generator):
    """Fusion inputs of shuffled training windows with every modality complete (lazy)."""
    specs = data.compose(rng, rng.permutation(len(data)), TRAINING)
    with torch.no_grad():
        for i in range(0, len(specs), 256):
            sp = specs[i : i + 256]
            b, _ = data.batch(sp, np.zeros((len(sp), 3)), np.ones((len(sp), 3), bool), rng)
            yield stack(b).fusion


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
    if cfg.fusion_model != "lnln":
        raise ValueError("the fusion_head stage retrains LNLN's head only (fusion_model=lnln)")
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
    train = ComposedData("train", cache, np.load(run / "face_views_train.npy"), data_root, augmented=True, text_states=run)
    valid = ComposedData("valid", cache, np.load(run / "face_views_valid.npy"), data_root)
    vbatches = _fusion_valid_batches(cfg, stack, valid)
    opt = torch.optim.AdamW(trained, lr=cfg.fusion_head_lr, weight_decay=1e-4)
    n_train = len(train) if not cfg.limit else min(len(train), cfg.limit * 8)
    steps = cfg.fusion_head_epochs * math.ceil(n_train / cfg.fusion_batch)
    sched = one_cycle(opt, steps, cfg.fusion_head_lr, pct=0.1)
    best = BestWeights(lower_is_better=True)  # a tie keeps the earlier weights
    best.keep(_fusion_valid(model, vbatches), model)  # the trunk's own head to beat
    print(f"  fusion head valid before training: {best.score:.4f}")
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
                    z = model.trunk(*stack(b).fusion)["z"]
                out = model.ordinal(z)
            else:
                out = model(*stack(b).fusion)
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
        best.update(score, model)
    best.restore(model)
    _save_fusion(
        model,
        vbatches,
        run,
        best.score,
        **{k: v for k, v in meta.items() if k not in ("config", "temperature", "conflict_gain", "valid_score", "head")},
        head=f"ordinal, retrained on a frozen trunk ({cfg.fusion_head_scope})",
    )


def _save_fusion(model: torch.nn.Module, vbatches, run: Path, valid_score: float, stem: str = "fusion", **meta) -> None:
    """Fits the class temperature and the conflict gain (``models.agreement.fit``) on the
    validation windows and writes <run>/<stem>.safetensors."""
    from models.agreement import fit as fit_agreement

    model.eval()
    parts = {k: [] for k in ("score", "spread", "est", "observed", "weight", "cls")}
    with torch.no_grad():  # (without it the graphs of every batch are kept: 20+ GB)
        for st, _, c in vbatches:
            out = model(*st.fusion)
            parts["score"].append(out["score"].numpy())
            parts["spread"].append(out["spread"].numpy())
            parts["est"].append(st.scores())
            parts["observed"].append(st.observed.numpy())
            parts["weight"].append(st.in_domain.numpy())
            parts["cls"].append(c.numpy())
    p = {k: np.concatenate(v) for k, v in parts.items()}
    temp, gain = fit_agreement(p["score"], p["spread"], p["est"], p["observed"], p["weight"], p["cls"])
    print(f"  fusion class temperature {temp:.3f}, conflict gain {gain:.2f}")
    checkpoint.save(
        run / f"{stem}.safetensors", model, model.cfg, valid_score=valid_score, temperature=temp, conflict_gain=gain, **meta
    )


@torch.no_grad()
def _fusion_valid(model: torch.nn.Module, vbatches) -> float:
    model.eval()
    maes, accs = [], []
    for s, y, c in vbatches:
        out = model(*s.fusion)
        maes.append((out["score"].clamp(-3, 3) - y).abs())
        accs.append((out["logits"].argmax(1) == c).float())
    return float(torch.cat(maes).mean() + 1 - torch.cat(accs).mean())


def select(cfg: TrainConfig, cache: Path, run: Path, data_root) -> None:
    """<run>/selection.json: for each modality, whether its own encoder beats the fusion
    model on validation windows where it is the only modality present (criterion as in
    fusion training: MAE + (1 - Acc-3)). Those go to runtime.json as
    ``single_modality_fallback``; ``SentimentModel.fuse`` then answers with the encoder."""
    from models.runtime import SentimentModel
    from models.types import MODALITIES

    spec = fusion_spec(cfg.fusion_model)
    stack = load_stack(run)
    fusion, fmeta = checkpoint.load(run / f"{spec.stem}.safetensors", spec.model, spec.config)
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
            u_s.append(st.estimates[mod].score.numpy())
            u_p.append(st.estimates[mod].probs.argmax(1).numpy())
        crit = {}
        for name, sc, pc in (("fusion", f_s, f_p), ("encoder", u_s, u_p)):
            mae = float(np.abs(np.concatenate(sc) - y).mean())
            acc = float(np.mean(np.concatenate(pc) == cls))
            crit[name] = {"mae": round(mae, 4), "acc3": round(100 * acc, 2), "criterion": round(mae + 1 - acc, 4)}
        out["validation"][mod.value] = crit
        if crit["encoder"]["criterion"] < crit["fusion"]["criterion"]:
            out["single_modality_fallback"].append(mod.value)
    (run / selection_file(spec.name)).write_text(json.dumps(out, indent=2))
    print("  selection:", json.dumps(out))


def selection_file(name: str) -> str:
    """The select stage's output file for fusion ``name`` (LNLN keeps ``selection.json``)."""
    return "selection.json" if name == "lnln" else f"selection_{name}.json"
