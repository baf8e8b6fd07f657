"""The fusion models side by side: ``python -m models.training.compare``.

Writes ``docs/fusion-comparison.json`` and ``docs/fusion-comparison.md``. Every shipped
fusion model (``models.fusion.FUSIONS``: LNLN, DashFusion, HME; each that has weights and
calibration in assets/) and the confidence-weighted late fusion of the unimodal estimates
(``models.training.baselines.late_fusion``), on the same windows:

1. CMU-MOSI and CMU-MOSEI test text, MMSA's metrics, with the single-modality fallback off
   (with it on every model gives the text encoder's rows), beside the text encoder and the
   frozen-MiniLM + ridge baseline;
2. LNLN's protocol on MOSI test text (word pieces dropped at r = 0.0 ... 0.9, three seeds,
   averaged), fallback off;
3. the composed trimodal test windows (realistic composition), every missing rate and
   modality subset, fallback off, beside each unimodal encoder; the floor: each model at or
   above the best single encoder (Acc-3) in every condition;
4. ECE over all composed conditions;
5. the real recordings (``streaming.evaluate_real``: the real clips through the live path,
   the RAVDESS test actors' voice with their words), each model as it ships (its own
   single-modality fallback);
6. speed in onnxruntime: batch 1 on one thread (p50, p95) and batched throughput;
7. size (parameters, files) and training time (the fusion stage of
   ``python -m models.training.train``, from <cache>/run/timings.json).

In: assets/ (weights, runtime.json, onnx), the corpora and the feature cache
(``python -m models.training.train --stages cache,text_states,views`` builds it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.fusion import DEFAULT_FUSION, FUSIONS
from models.paths import REPO_ROOT, assets_dir, cache_dir, data_root
from models.runtime import SentimentModel
from models.training import metrics
from models.training.composed import REALISTIC, ComposedData
from models.training.data import load_faces, load_text
from models.training.evaluate import _pct, evaluate_lnln_protocol, ridge_baseline
from models.training.evaluate_composed import COMPOSED_SEED, evaluate_composed
from models.training.feature_cache import text_features
from models.training.predict import face_view_features, predict_text_models
from models.training.speed import batched_throughput, benchmark_fusion, cpu_name, latency_by_text_length
from models.types import score_to_class

SECTIONS = ("text", "protocol", "composed", "real", "speed")


def without_fallback(model: SentimentModel) -> SentimentModel:
    """The same model with the single-modality fallback off: the fusion answers every row."""
    m = copy.copy(model)
    m.single_fallback = []
    return m


def compare_text(models: dict[str, SentimentModel], cache: Path, root) -> dict:
    out = {"baseline_minilm_ridge": ridge_baseline(cache, root)}
    for corpus in ("mosi", "mosei"):
        df = load_text(corpus, root)
        rag, _ = text_features(cache, corpus, 0, root)
        rows = np.flatnonzero(df["split"].to_numpy() == "test")
        y = df["score"].to_numpy()[rows]
        feats = [rag[r] for r in rows]
        res = {"n": int(len(rows))}
        for name, model in models.items():
            p = predict_text_models(without_fallback(model), feats)
            res[name] = _pct(metrics.mmsa_regression(p["fusion"], y))
            res[name + "_acc3"] = round(100 * float(np.mean(p["fusion_probs"].argmax(1) == score_to_class(y))), 2)
            if "text_encoder" not in res:
                res["text_encoder"] = _pct(metrics.mmsa_regression(p["encoder"], y))
        out[corpus] = res
    return out


def compare_protocol(models: dict[str, SentimentModel], cache: Path, root) -> dict:
    out = {}
    for name, model in models.items():
        r = evaluate_lnln_protocol(without_fallback(model), cache, root)
        out[name] = r["average"]["fusion_text_only"]
        out.setdefault("text_encoder", r["average"]["text_encoder"])
    return out


def compare_composed(models: dict[str, SentimentModel], cache: Path, root) -> dict:
    first = next(iter(models.values()))
    faces = load_faces("test", root)
    views = face_view_features(first.stack.face, faces.images, np.random.default_rng(COMPOSED_SEED), desc="face views test")
    data = ComposedData("test", cache, views, root)
    out = {}
    for name, model in models.items():
        r = evaluate_composed(without_fallback(model), cache, root, REALISTIC, data)
        r.pop("_reliability")
        out[name] = r
    return out


def compare_real(models: dict[str, SentimentModel], root: Path) -> dict:
    from streaming.asr import StreamingASR
    from streaming.evaluate_real import evaluate_ravdess, evaluate_real_clips
    from streaming.real_report import accuracy_table, coherence

    asr = StreamingASR(threads=2)
    out = {}
    for name, model in models.items():
        real = evaluate_real_clips(model, asr, root / "real")
        rav = evaluate_ravdess(model, root)
        out[name] = {
            "tables": {"real": accuracy_table(real), "ravdess": accuracy_table(rav), "all": accuracy_table(real + rav)},
            "coherence": coherence(real + rav),
            "clips": {c["file"]: {"truth": c["truth"], "fused": c["clip"]["fused"]} for c in real},
        }
    return out


def compare_speed(names: list[str], assets: Path) -> dict:
    out = {}
    for name in names:
        stem = FUSIONS[name].stem
        out[name] = {
            "batch1": benchmark_fusion(assets, stem=stem),
            "batched": batched_throughput(assets, stem),
            "by_text_length": latency_by_text_length(assets, stem),
        }
    return out


def _train_seconds(name: str, run: Path, previous: dict) -> tuple[float | None, str]:
    """The fusion stage's training time and where it comes from.

    In order: this cache's ``timings.json`` (the training command writes LNLN under ``fusion`` and the others
    under ``fusion:NAME``), the figure an earlier run of this command kept, and for LNLN the shipped run's
    timings in ``docs/evaluation.json``.
    """
    timings = json.loads((run / "timings.json").read_text()) if (run / "timings.json").exists() else {}
    key = "fusion" if name == DEFAULT_FUSION else f"fusion:{name}"
    if key in timings:
        return timings[key], "this cache's timings.json"
    if previous.get("train_seconds") is not None:
        return previous["train_seconds"], previous.get("train_seconds_from", "an earlier run of this command")
    evaluation = REPO_ROOT / "docs" / "evaluation.json"
    if name == DEFAULT_FUSION and evaluation.exists():
        meta = json.loads(evaluation.read_text()).get("meta", {})
        if "fusion" in meta.get("train_timings_s", {}):
            return meta["train_timings_s"]["fusion"], f"the shipped run of {meta.get('evaluated', '?')}, another host"
    return None, ""


def sizes(names: list[str], assets: Path, run: Path, previous: dict | None = None) -> dict:
    previous = previous or {}
    out = {}
    for name in names:
        spec = FUSIONS[name]
        seconds, source = _train_seconds(name, run, previous.get(name, {}))
        model, meta = checkpoint.load(assets / "weights" / f"{spec.stem}.safetensors", spec.model, spec.config)
        onnx = assets / "onnx" / f"{spec.stem}.onnx"
        out[name] = {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "buffers": int(sum(b.numel() for b in model.buffers())),
            "safetensors_bytes": (assets / "weights" / f"{spec.stem}.safetensors").stat().st_size,
            "onnx_bytes": onnx.stat().st_size if onnx.exists() else None,
            "valid_score": meta.get("valid_score"),
            "train_seconds": seconds,
            "train_seconds_from": source,
        }
    return out


def floors(r: dict) -> dict:
    """Each model against the best single encoder (Acc-3) in every composed condition."""
    out = {}
    for name, comp in r.get("composed", {}).items():
        below = []
        for group in ("rates", "subsets"):
            for cond, row in comp[group].items():
                present = [m for m in ("text", "audio", "vision") if group == "rates" or m[0].upper() in cond.split("+")]
                best = max(row[m]["acc3"] for m in present)
                if row["fusion"]["acc3"] < best:
                    below.append({"condition": f"{group}:{cond}", "fusion": row["fusion"]["acc3"], "best_encoder": best})
        out[name] = below
    return out


# ---------------------------------------------------------------- the document
def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _stamps(meta: dict) -> str:
    """'Sections text, protocol measured on M at T; speed on ...' from the per-section stamps."""
    groups: dict[tuple, list] = {}
    for section, st in meta.get("sections", {}).items():
        groups.setdefault((st["machine"], st["evaluated"]), []).append(section)
    if not groups:
        return f"Measured on {meta['machine']}, {meta['evaluated']}."
    parts = [f"{', '.join(secs)} on {machine}, {when}" for (machine, when), secs in sorted(groups.items(), key=lambda g: g[0][1])]
    return "Sections measured: " + "; ".join(parts) + "."


def write_document(r: dict, path: Path) -> None:
    names = r["models"]
    titles = {n: FUSIONS[n].title for n in names}
    L = [
        "# Fusion models compared: LNLN, DashFusion, HME and late fusion",
        "",
        "Written by `python -m models.training.compare`; do not edit by hand. "
        + _stamps(r["meta"])
        + " Every model reads the same features of the same windows "
        "(the shipped encoders, calibration and in-domain statistics) and was trained by the same command on the same "
        "composed windows (`python -m models.training.train --stages fusion,select --set fusion_model=NAME`).",
        "",
    ]
    if "sizes" in r:
        L += ["## Size, training, speed", ""]
        L += [
            _row(
                [
                    "model",
                    "parameters",
                    "bank (buffers)",
                    "safetensors kB",
                    "ONNX kB",
                    "training s (fusion stage)",
                    "valid criterion",
                    "batch 1, 1 thread p50 ms",
                    "p95 ms",
                    "batched windows/s",
                ]
            ),
            _row(["---"] * 10),
        ]
        for n in names:
            s, sp = r["sizes"][n], r.get("speed", {}).get(n, {})
            b1, bb = sp.get("batch1", {}), sp.get("batched", {})
            L.append(
                _row(
                    [
                        titles[n],
                        f"{s['parameters']:,}",
                        f"{s['buffers']:,}",
                        round(s["safetensors_bytes"] / 1000),
                        round(s["onnx_bytes"] / 1000) if s["onnx_bytes"] else "-",
                        (f"{s['train_seconds']}" + (" *" if "another host" in s.get("train_seconds_from", "") else ""))
                        if s["train_seconds"] is not None
                        else "-",
                        round(s["valid_score"], 4) if s["valid_score"] is not None else "-",
                        b1.get("p50_ms", "-"),
                        b1.get("p95_ms", "-"),
                        f"{bb['windows_per_s']:,} (batch {bb['batch']}, {bb['threads']} threads)"
                        if "windows_per_s" in bb
                        else "-",
                    ]
                )
            )
        L += [
            "",
            "The validation criterion is what training selects on: mean MAE + (1 - Acc-3) over the fixed validation "
            "conditions (lower is better). Training times marked * were measured on another host than the rest"
            + "".join(
                f" ({titles[n]}: {r['sizes'][n]['train_seconds_from']})"
                for n in names
                if "another host" in r["sizes"][n].get("train_seconds_from", "")
            )
            + "; the speed columns are one onnxruntime session on this section's host.",
            "",
        ]
        by = {n: r.get("speed", {}).get(n, {}).get("by_text_length") for n in names}
        if all(by.values()):
            lengths = list(by[names[0]])
            L += [
                "Batch 1, one thread, p50 ms by the window's text word pieces (audio and vision of a full 3 s window; "
                "every length timed in turn, round after round):",
                "",
                _row(["model"] + [f"{k} pieces" for k in lengths]),
                _row(["---"] * (len(lengths) + 1)),
            ]
            L += [_row([titles[n]] + [by[n][k] for k in lengths]) for n in names]
            L += [""]
    if "text" in r:
        t = r["text"]
        L += ["## 1. Text only (MOSI / MOSEI test), single-modality fallback off", ""]
        L += [
            _row(["model", "corpus", "Acc-2 has-0", "Acc-2 non-0", "F1 non-0", "Acc-7", "MAE", "Corr", "Acc-3"]),
            _row(["---"] * 9),
        ]
        for corpus in ("mosi", "mosei"):
            c = t[corpus]
            base = t["baseline_minilm_ridge"][corpus]
            rows = [("MiniLM + ridge (baseline)", base, "-"), ("text encoder alone", c["text_encoder"], "-")]
            rows += [(titles[n], c[n], c[n + "_acc3"]) for n in names]
            for label, m, a3 in rows:
                L.append(_row([label, corpus, m["acc2_has0"], m["acc2_non0"], m["f1_non0"], m["acc7"], m["mae"], m["corr"], a3]))
        L += [""]
    if "protocol" in r:
        p = r["protocol"]
        L += ["## 2. LNLN's protocol (MOSI test text, r = 0.0 ... 0.9, averaged), fallback off", ""]
        L += [_row(["model", "Acc-2 has-0", "Acc-2 non-0", "F1 non-0", "MAE", "Corr"]), _row(["---"] * 6)]
        for label, key in [("text encoder alone", "text_encoder")] + [(titles[n], n) for n in names]:
            m = p[key]
            L.append(_row([label, m["acc2_has0"], m["acc2_non0"], m["f1_non0"], m["mae"], m["corr"]]))
        L += [""]
    if "composed" in r:
        comp = r["composed"]
        first = comp[names[0]]
        L += [
            "## 3. Composed trimodal test windows (realistic composition), fallback off: Acc-3 % (MAE)",
            "",
            f"{first['n_windows']} windows; voice and face agree with the words at the rates of "
            "`models.training.composed.REALISTIC`. Encoders and late fusion are the same in every model's run.",
            "",
        ]
        cols = ["condition", *[titles[n] for n in names], "late fusion", "text", "audio", "vision"]
        L += [_row(cols), _row(["---"] * len(cols))]
        for group, label in (("rates", "T+A+V, drop rate "), ("subsets", "")):
            for cond in first[group]:
                if group == "subsets" and cond == "T+A+V":
                    continue
                cells = [label + cond]
                for n in names:
                    f = comp[n][group][cond]["fusion"]
                    cells.append(f"{f['acc3']} ({f['mae']})")
                base = first[group][cond]
                for k in ("late_fusion", "text", "audio", "vision"):
                    cells.append(f"{base[k]['acc3']} ({base[k]['mae']})")
                L.append(_row(cells))
        L += ["", "## 4. Calibration: ECE over all composed conditions (%)", ""]
        L += [_row(["model", "ECE"]), _row(["---"] * 2)]
        L += [_row([titles[n], comp[n]["fusion_ece_all_conditions"]]) for n in names]
        L += [""]
        fl = r["floors"]
        L += ["Floor (each model at or above the best single encoder, Acc-3, in every composed condition):", ""]
        for n in names:
            L.append(
                f"- {titles[n]}: "
                + (
                    "met in every condition"
                    if not fl[n]
                    else "below in " + ", ".join(f"{b['condition']} ({b['fusion']} < {b['best_encoder']})" for b in fl[n])
                )
            )
        L += [""]
    if "real" in r:
        re_ = r["real"]
        L += [
            "## 5. Real recordings, each model as it ships (clip accuracy %, correct / clips)",
            "",
            "The real clips of `../shared/data/real` replayed through the live path (recogniser included) and the "
            "RAVDESS test actors' voices with their typed words (`streaming.evaluate_real`). A check, never training "
            "or selection data.",
            "",
        ]
        cols = ["model", "real clips", "RAVDESS voice + words", "all", "late fusion (all)", "windows incoherent"]
        L += [_row(cols), _row(["---"] * len(cols))]
        for n in names:
            t = re_[n]["tables"]

            def cell(d):
                return f"{d['acc']} ({d['correct']}/{d['n']})"

            L.append(
                _row(
                    [
                        titles[n],
                        cell(t["real"]["fused"]),
                        cell(t["ravdess"]["fused"]),
                        cell(t["all"]["fused"]),
                        cell(t["all"]["late_fusion"]),
                        f"{re_[n]['coherence']['incoherent']} of {re_[n]['coherence']['windows']}",
                    ]
                )
            )
        L += ["", "Per real clip (truth: the clip's label; each model's column: the label it gave the whole clip):", ""]
        files = list(re_[names[0]]["clips"])
        L += [_row(["clip", "truth", *[titles[n] for n in names]]), _row(["---"] * (2 + len(names)))]
        for f in files:
            L.append(_row([f, re_[names[0]]["clips"][f]["truth"], *[re_[n]["clips"][f]["fused"] for n in names]]))
        L += [""]
    path.write_text("\n".join(L) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--cache")
    ap.add_argument("--assets")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "fusion-comparison"), help="path without suffix")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--models", help="comma-separated fusion names (default: every shipped one)")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(set(sections) - set(SECTIONS))}")
    torch.set_num_threads(2)
    assets, cache, root = assets_dir(args.assets), cache_dir(args.cache), data_root(args.data)
    base = SentimentModel.load(assets, use_onnx=False, threads=1)
    names = args.models.split(",") if args.models else base.fusions_available
    models = {n: base.with_fusion(n) for n in names}
    out = Path(args.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    r = {k: v for k, v in old.items() if k in SECTIONS or k == "sizes"}
    t0 = time.time()
    if "text" in sections:
        r["text"] = compare_text(models, cache, root)
    if "protocol" in sections:
        r["protocol"] = compare_protocol(models, cache, root)
    if "composed" in sections:
        r["composed"] = compare_composed(models, cache, root)
    if "real" in sections:
        live = {n: SentimentModel.load(assets, threads=1).with_fusion(n) for n in names}  # onnxruntime, as live
        r["real"] = compare_real(live, root)
    if "speed" in sections:
        r["speed"] = compare_speed(names, assets)
    r["sizes"] = sizes(names, assets, cache / "run", old.get("sizes"))
    r["models"] = names
    r["floors"] = floors(r)
    # each section keeps the run that measured it: a later --sections speed does not restamp the accuracy tables
    stamp = {"evaluated": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores, {cpu_name()}"}
    runs = dict(old.get("meta", {}).get("sections", {}))
    if "sections" not in old.get("meta", {}) and "evaluated" in old.get("meta", {}):  # written before sections had stamps
        runs.update({s: {k: old["meta"][k] for k in ("evaluated", "machine")} for s in SECTIONS if s in old})
    runs.update({s: stamp for s in sections})
    r["meta"] = {**stamp, "seconds": round(time.time() - t0), "sections": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1))
    write_document(r, out.with_suffix(".md"))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
