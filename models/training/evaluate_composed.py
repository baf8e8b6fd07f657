"""The composed trimodal benchmark, section 5 of the evaluation document.

In: a ``SentimentModel``, the feature cache and the corpora (or a prepared
``ComposedData`` of the test splits), and a ``Composition`` saying how each window's
partners are drawn (``models.training.composed``); out: a dict of the fused model's, each
unimodal encoder's and the confidence-weighted late fusion's (``models.training.baselines``)
Acc-3, macro F1, MAE, Acc-2 and ECE at every missing rate and in every modality subset,
with the agreement and coherence counts, the calibration error over all conditions and,
under ``_reliability``, the raw confidences and hits (``models.training.evaluate`` pops it
for the reliability figure).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.runtime import SentimentModel
from models.training import metrics
from models.training.baselines import late_fusion
from models.training.composed import REALISTIC, ComposedData, Composition
from models.training.data import load_faces
from models.training.missing import SUBSET_NAMES, SUBSETS, TEST_RATES
from models.training.predict import face_view_features
from models.types import MODALITIES, Modality, is_coherent

COMPOSED_SEED = 7


def evaluate_composed(model: SentimentModel, cache: Path, data_root, how: Composition = REALISTIC, data=None) -> dict:
    """Composed test windows (test splits only), face views from the shipped face encoder,
    partners drawn as ``how`` says (``models.training.composed``). With every modality present and
    no drops, also the mean fused confidence on windows whose modalities' classes agree
    and on those where they conflict."""
    if data is None:
        faces = load_faces("test", data_root)
        views = face_view_features(model.stack.face, faces.images, np.random.default_rng(COMPOSED_SEED), desc="face views test")
        data = ComposedData("test", cache, views, data_root)
    specs = data.compose(np.random.default_rng(COMPOSED_SEED), how=how)
    conflict = np.array([s.conflict for s in specs])
    y = np.array([s.score for s in specs], np.float32)
    cls = np.array([s.cls for s in specs])
    conditions = [("rate", r, SUBSETS[0]) for r in TEST_RATES] + [("subset", 0.0, s) for s in SUBSETS]
    res = {"n_windows": len(specs), "composition": asdict(how), "rates": {}, "subsets": {}}
    all_conf, all_correct = [], []
    # coherence: label (the class of the score) ranked first by the probabilities, in every
    # fused window and every unimodal estimate; and how often a clamp still fires (the text
    # encoder's raw score outside [-3, 3])
    coh = {
        "fused_windows": 0,
        "fused_incoherent": 0,
        "estimates": 0,
        "estimates_incoherent": 0,
        "text_rows": 0,
        "text_clamped": 0,
    }
    for kind, rate, subset in tqdm(conditions, desc="composed test conditions"):
        override = data.text_at_rate(specs, rate, COMPOSED_SEED) if rate > 0 else None
        rng = np.random.default_rng(COMPOSED_SEED + int(rate * 10))
        outs = {k: ([], []) for k in ("fusion", "text", "audio", "vision", "late_fusion")}
        for i in range(0, len(specs), 256):
            sp = specs[i : i + 256]
            presence = np.tile(np.array(subset, bool), (len(sp), 1))
            b, _ = data.batch(sp, np.full((len(sp), 3), rate), presence, rng, None if override is None else override[i : i + 256])
            s = model.stack(b)
            f_score, f_probs = model.fuse(s)
            coh["fused_windows"] += len(f_score)
            coh["fused_incoherent"] += sum(not is_coherent(a, b) for a, b in zip(f_score, f_probs))
            pres = s.present.numpy()
            for m, mod in enumerate(MODALITIES):
                rows = np.flatnonzero(pres[:, m])
                e = s.estimates[mod]
                sc_m, pr_m = e.score.numpy()[rows], e.probs.numpy()[rows].astype(np.float64)
                coh["estimates"] += len(rows)
                coh["estimates_incoherent"] += sum(not is_coherent(a, b / b.sum()) for a, b in zip(sc_m, pr_m))
            coh["text_rows"] += int(pres[:, 0].sum())
            coh["text_clamped"] += int(s.estimates[Modality.TEXT].clamped.sum())
            outs["fusion"][0].append(f_score)
            outs["fusion"][1].append(f_probs)
            prior_p = np.tile(model.prior_probs, (len(sp), 1))
            est = {}
            for m, mod in enumerate(MODALITIES):
                e = s.estimates[mod]
                sc = np.where(pres[:, m], e.score.numpy(), model.prior_score)
                pr = np.where(pres[:, m : m + 1], e.probs.numpy(), prior_p)
                outs[mod.value][0].append(sc)
                outs[mod.value][1].append(pr)
                est[mod.value] = (sc, pr, pres[:, m])
            lf_s, lf_p = late_fusion(
                np.stack([e[0] for e in est.values()], 1),
                np.stack([e[1] for e in est.values()], 1),
                np.stack([e[2] for e in est.values()], 1),
                model.prior_score,
                model.prior_probs,
            )
            outs["late_fusion"][0].append(lf_s)
            outs["late_fusion"][1].append(lf_p)
        row = {}
        for name, (scores, probs) in outs.items():
            sc, pr = np.concatenate(scores), np.concatenate(probs)
            c = metrics.classification(pr, cls)
            row[name] = {
                "acc3": round(100 * c["acc"], 2),
                "f1_macro": round(100 * c["f1_macro"], 2),
                "mae": round(float(np.abs(sc - y).mean()), 4),
                "acc2_non0": round(100 * float(np.mean((sc[y != 0] > 0) == (y[y != 0] > 0))), 2),
                "ece": round(100 * c["ece"], 2),
            }
            if name == "fusion":
                all_conf.append(pr.max(1))
                all_correct.append(pr.argmax(1) == cls)
                if kind == "rate" and rate == 0.0:
                    conf = pr.max(1)
                    right = pr.argmax(1) == cls
                    res["agreement"] = {
                        "n_agree": int((~conflict).sum()),
                        "n_conflict": int(conflict.sum()),
                        "confidence_agree": round(100 * float(conf[~conflict].mean()), 2),
                        "confidence_conflict": round(100 * float(conf[conflict].mean()), 2) if conflict.any() else None,
                        "acc3_agree": round(100 * float(right[~conflict].mean()), 2),
                        "acc3_conflict": round(100 * float(right[conflict].mean()), 2) if conflict.any() else None,
                    }
        key = str(rate) if kind == "rate" else SUBSET_NAMES[subset]
        res["rates" if kind == "rate" else "subsets"][key] = row
    res["coherence"] = coh
    res["fusion_ece_all_conditions"] = round(
        100 * metrics.expected_calibration_error(np.concatenate(all_conf), np.concatenate(all_correct)), 2
    )
    res["_reliability"] = (np.concatenate(all_conf).tolist(), np.concatenate(all_correct).astype(int).tolist())
    return res
