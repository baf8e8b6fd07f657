"""Evaluate the shipped models: ``python -m models.training.evaluate``.

Writes ``docs/evaluation.json`` (every figure), ``docs/figures/*.png`` and
``docs/evaluation.md`` (the evaluation document). Sections:
1. CMU-MOSI and CMU-MOSEI test, text only, MMSA's metrics, beside a frozen-MiniLM +
   ridge baseline trained on the same data;
2. LNLN's robustness protocol on MOSI test text (rates 0.0 ... 0.9, three seeds);
3. RAVDESS held-out actors and EmoDB held-out speakers (emotion, mapped sentiment);
4. FER-2013 test (emotion, mapped sentiment), also through the live face-mesh path;
5. the composed trimodal test set: missing rates and modality subsets, beside each
   unimodal encoder alone and a confidence-weighted late fusion
   (``models.training.evaluate_composed``);
6. calibration (ECE) and the fusion model's speed (ONNX, batch 1, one thread;
   ``models.training.speed``).

In: the shipped assets folder (``--assets``), the corpora and the feature cache; the
encoders' predictions come from ``models.training.predict``, so no trainer is imported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import checkpoint
from models.encoders.face import FRAME_FLIP, encode_faces
from models.labels import (
    EMOTIONS,
    FER_EMOTIONS,
    corpus_emotion_mask,
    sentiment_index,
    sentiment_matrix,
)
from models.paths import REPO_ROOT, assets_dir, cache_dir
from models.runtime import SentimentModel
from models.training import metrics
from models.training.composed import CLASS_MATCHED, REALISTIC, ComposedData
from models.training.data import load_faces, load_speech, load_text
from models.training.evaluate_composed import COMPOSED_SEED, evaluate_composed
from models.training.feature_cache import (
    speech_features,
    text_features,
    text_features_at_rate,
    windows_by_clip,
)
from models.training.missing import TEST_RATES
from models.training.predict import (
    clip_logits,
    face_view_features,
    predict_audio,
    predict_text_models,
)
from models.training.speed import benchmark_fusion
from models.types import FACE_EMB_DIM, score_to_class

SEEDS = (0, 1, 2)


def _pct(d: dict) -> dict:
    return {k: (round(100 * v, 2) if k.startswith(("acc", "f1", "ece")) else round(v, 4)) for k, v in d.items()}


# ---------------------------------------------------------------- 1 + 2: text
def ridge_baseline(cache: Path, data_root) -> dict:
    """Frozen MiniLM sentence embedding (all 6 layers, mean-pooled, normalised) + ridge,
    trained on MOSI + MOSEI train, alpha chosen on their valid split."""
    from sklearn.linear_model import Ridge

    from models.features.text import TextFeatureExtractor

    path = cache / "minilm_sentence.npz"
    tables = {c: load_text(c, data_root) for c in ("mosi", "mosei")}
    if not path.exists():
        ex = TextFeatureExtractor(n_layers=6)
        emb = {}
        for c, df in tables.items():
            toks = []
            texts = df["text"].tolist()
            for i in tqdm(range(0, len(texts), 512), desc=f"sentence embeddings {c}"):
                toks += ex(texts[i : i + 512])
            e = np.stack([t.mean(0) for t in toks])
            emb[c] = e / np.linalg.norm(e, axis=1, keepdims=True)
        np.savez(path, **emb)
    emb = dict(np.load(path))

    def part(split):
        x = np.concatenate([emb[c][tables[c]["split"] == split] for c in tables])
        y = np.concatenate([tables[c]["score"][tables[c]["split"] == split] for c in tables])
        return x, y

    xtr, ytr = part("train")
    xva, yva = part("valid")
    best = min((np.abs(Ridge(alpha=a).fit(xtr, ytr).predict(xva) - yva).mean(), a) for a in (0.1, 0.3, 1, 3, 10, 30))
    ridge = Ridge(alpha=best[1]).fit(xtr, ytr)
    out = {"alpha": best[1]}
    for c, df in tables.items():
        m = (df["split"] == "test").to_numpy()
        out[c] = _pct(metrics.mmsa_regression(ridge.predict(emb[c][m]), df["score"][m]))
    return out


def evaluate_text(model: SentimentModel, cache: Path, data_root) -> dict:
    res = {"baseline_minilm_ridge": ridge_baseline(cache, data_root)}
    for corpus in ("mosi", "mosei"):
        df = load_text(corpus, data_root)
        rag, _ = text_features(cache, corpus, 0, data_root)
        rows = np.flatnonzero(df["split"].to_numpy() == "test")
        y = df["score"].to_numpy()[rows]
        p = predict_text_models(model, [rag[r] for r in rows])
        cls = score_to_class(y)
        res[corpus] = {
            "n": int(len(rows)),
            "text_encoder": _pct(metrics.mmsa_regression(p["encoder"], y)),
            "fusion_text_only": _pct(metrics.mmsa_regression(p["fusion"], y)),
            "text_encoder_classes": _pct(metrics.classification(p["encoder_probs"], cls)),
            "fusion_text_only_classes": _pct(metrics.classification(p["fusion_probs"], cls)),
        }
    return res


def evaluate_lnln_protocol(model: SentimentModel, cache: Path, data_root) -> dict:
    """MOSI test text with word pieces dropped to [UNK] at r = 0.0 ... 0.9, seeds 0-2:
    per-rate metrics averaged over seeds, then the average over rates."""
    df = load_text("mosi", data_root)
    rows = np.flatnonzero(df["split"].to_numpy() == "test")
    y = df["score"].to_numpy()[rows]
    per_rate = {}
    for rate in tqdm(TEST_RATES, desc="LNLN protocol (MOSI)"):
        runs = {"text_encoder": [], "fusion_text_only": []}
        for seed in SEEDS if rate > 0 else SEEDS[:1]:
            if rate == 0:
                rag, _ = text_features(cache, "mosi", 0, data_root)
                feats = [rag[r] for r in rows]
            else:
                rag, _ = text_features_at_rate(cache, "mosi", "test", rate, seed, data_root)
                feats = [rag[i] for i in range(len(rows))]
            p = predict_text_models(model, feats)
            runs["text_encoder"].append(metrics.mmsa_regression(p["encoder"], y))
            runs["fusion_text_only"].append(metrics.mmsa_regression(p["fusion"], y))
        per_rate[str(rate)] = {k: _pct(_mean_dicts(v)) for k, v in runs.items()}
    avg = {
        k: {
            m: round(float(np.mean([per_rate[str(r)][k][m] for r in TEST_RATES])), 2 if m != "mae" and m != "corr" else 4)
            for m in per_rate["0.0"][k]
        }
        for k in ("text_encoder", "fusion_text_only")
    }
    return {"per_rate": per_rate, "average": avg}


def _mean_dicts(ds: list[dict]) -> dict:
    return {k: float(np.mean([d[k] for d in ds])) for k in ds[0]}


# ---------------------------------------------------------------- 3: speech
def evaluate_speech(model: SentimentModel, cache: Path, data_root) -> dict:
    df = load_speech(data_root)
    feats, extra = speech_features(cache, 0, data_root)
    by_clip = windows_by_clip(extra)
    res = {}
    for corpus in ("ravdess", "emodb"):
        rows = np.flatnonzero((df["split"] == "test").to_numpy() & (df["corpus"] == corpus).to_numpy())
        # a clip's answer: the mean logits of its 3 s windows, each encoded alone as live
        logits = clip_logits(model.stack.audio, feats, by_clip, rows)
        widx = [i for r in rows for i in by_clip[int(r)]]
        wtruth = df["emotion_idx"].to_numpy()[[int(extra["row"][i]) for i in widx]]
        wz = np.where(
            corpus_emotion_mask(corpus), predict_audio(model.stack.audio, [feats[i].astype(np.float32) for i in widx]), -np.inf
        )
        allowed = corpus_emotion_mask(corpus)
        z = np.where(allowed, logits, -np.inf)
        pred = z.argmax(1)
        truth = df["emotion_idx"].to_numpy()[rows]
        probs = model.stack.audio_probs(torch.from_numpy(logits)).numpy()
        sent_p = probs @ sentiment_matrix(EMOTIONS)
        sent_truth = np.array([sentiment_index(EMOTIONS[e]) for e in truth])
        keep = sent_truth >= 0
        names = [e for e, a in zip(EMOTIONS, allowed) if a]
        res[corpus] = {
            "n": int(len(rows)),
            "speakers": sorted(int(s) for s in set(df["speaker"].to_numpy()[rows])),
            "emotion_acc": round(100 * float(np.mean(pred == truth)), 2),
            "emotion_acc_per_window": round(100 * float(np.mean(wz.argmax(1) == wtruth)), 2),
            "n_windows": len(widx),
            "n_classes": int(allowed.sum()),
            "sentiment": _pct(metrics.classification(sent_p[keep], sent_truth[keep])),
            "confusion": _confusion(truth, pred, [EMOTIONS.index(n) for n in names]),
            "class_names": names,
        }
    return res


def _confusion(truth, pred, labels) -> list[list[int]]:
    idx = {name: i for i, name in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), int)
    for t, p in zip(truth, pred):
        if t in idx and p in idx:
            m[idx[t], idx[p]] += 1
    return m.tolist()


# ---------------------------------------------------------------- 4: faces
def evaluate_faces(model: SentimentModel, data_root, live_path: bool = True) -> dict:
    test = load_faces("test", data_root)
    truth = np.array([FER_EMOTIONS.index(EMOTIONS[e]) for e in test.emotion_idx])
    logits = encode_faces(model.stack.face, test.images, flip=True)["logits"]
    pred = logits.argmax(1)
    pred_single = encode_faces(model.stack.face, test.images, flip=False)["logits"].argmax(1)
    probs = model.stack.face_probs(torch.from_numpy(logits)).numpy()
    sent_p = probs @ sentiment_matrix(FER_EMOTIONS)
    sent_truth = np.array([sentiment_index(e) for e in np.array(FER_EMOTIONS)[truth]])
    keep = sent_truth >= 0
    res = {
        "n": int(len(test)),
        "emotion_acc": round(100 * float(np.mean(pred == truth)), 2),
        "emotion_acc_no_flip": round(100 * float(np.mean(pred_single == truth)), 2),
        "sentiment": _pct(metrics.classification(sent_p[keep], sent_truth[keep])),
        "confusion": _confusion(truth, pred, list(range(len(FER_EMOTIONS)))),
        "class_names": list(FER_EMOTIONS),
    }
    if live_path:
        from models.features.vision import FaceAnalyzer, fer_image_to_frame

        analyzer = FaceAnalyzer(static=True, max_faces=1)
        crops, found = [], []
        for img in tqdm(test.images, desc="FER test through the face mesh"):
            obs = analyzer(fer_image_to_frame(img))
            found.append(obs.has_face)
            if obs.has_face:
                crops.append(obs.crop)
        found = np.array(found)
        lp = model.face_frames(np.stack(crops))[:, FACE_EMB_DIM:].argmax(1)  # what the live runtime computes
        single = pred if FRAME_FLIP else pred_single
        res["live_path"] = {
            "face_found": round(100 * float(found.mean()), 2),
            "emotion_acc_on_found": round(100 * float(np.mean(lp == truth[found])), 2),
            "raw_acc_on_found": round(100 * float(np.mean(single[found] == truth[found])), 2),
            "mirror_averaged": FRAME_FLIP,
        }
    return res


# ---------------------------------------------------------------- main
def _training_meta(path: Path) -> dict:
    """How a shipped encoder was trained, from its weights' metadata (device, epochs, ...)."""
    if not path.exists():
        return {}
    _, meta = checkpoint.read(path)
    return {k: meta[k] for k in ("device", "epochs", "epoch", "valid_acc") if k in meta}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--cache")
    ap.add_argument("--assets")
    ap.add_argument("--docs", default=str(REPO_ROOT / "docs"), help="where the report, figures and document go")
    ap.add_argument("--sections", default="text,lnln,speech,faces,composed,speed")
    ap.add_argument("--no-live-faces", action="store_true", help="skip FER test through the face mesh")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cache = cache_dir(args.cache)
    run = cache / "run"
    run.mkdir(parents=True, exist_ok=True)
    assets = assets_dir(args.assets)
    docs = Path(args.docs)
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    report_path = docs / "evaluation.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    model = SentimentModel.load(assets, use_onnx=False)
    sections = args.sections.split(",")
    t0 = time.time()
    if "text" in sections:
        report["text"] = evaluate_text(model, cache, args.data)
    if "lnln" in sections:
        report["lnln_protocol"] = evaluate_lnln_protocol(model, cache, args.data)
    if "speech" in sections:
        report["speech"] = evaluate_speech(model, cache, args.data)
    if "faces" in sections:
        report["faces"] = evaluate_faces(model, args.data, not args.no_live_faces)
    if "composed" in sections:
        faces = load_faces("test", args.data)
        views = face_view_features(model.stack.face, faces.images, np.random.default_rng(COMPOSED_SEED), desc="face views test")
        data = ComposedData("test", cache, views, args.data)
        comp = evaluate_composed(model, cache, args.data, REALISTIC, data)
        conf, correct = comp.pop("_reliability")
        np.savez(run / "reliability.npz", confidence=np.asarray(conf, np.float32), correct=np.asarray(correct, np.int8))
        report["composed"] = comp
        old = evaluate_composed(model, cache, args.data, CLASS_MATCHED, data)
        old.pop("_reliability")
        report["composed_class_matched"] = old
    if "speed" in sections:
        report["speed"] = benchmark_fusion(assets)
    report["meta"] = {
        "assets": str(assets),
        "evaluated": time.strftime("%Y-%m-%d %H:%M"),
        "eval_seconds": round(time.time() - t0),
        "single_modality_fallback": list(model.cfg.get("single_modality_fallback", [])),
        "face_encoder_training": _training_meta(checkpoint.weights_path(assets, "face_encoder")),
        "train_timings_s": json.loads((run / "timings.json").read_text())
        if (run / "timings.json").exists()
        else report.get("meta", {}).get("train_timings_s", {}),
    }
    from models.training.report import update_model_card, write_document

    rel = dict(np.load(run / "reliability.npz")) if (run / "reliability.npz").exists() else None
    report_path.write_text(json.dumps(report, indent=1))
    write_document(report, docs, rel)
    update_model_card(report, assets / "MODEL_CARD.md")
    print(f"wrote {report_path}, {docs / 'evaluation.md'} and figures")


if __name__ == "__main__":
    main()
