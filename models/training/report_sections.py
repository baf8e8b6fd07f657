"""The numbered sections of ``docs/evaluation.md``, one function per section.

In: the report dict ``r`` that ``python -m models.training.evaluate`` builds and, for the
sections that link figures, ``made`` (the file names ``report_plots.plots`` drew); out: that
section's markdown lines (empty where the report has no such part).
``models.training.report.write_document`` joins them in order. Also holds the published
figures and targets quoted for comparison, and the small table helpers.
"""

from __future__ import annotations

import numpy as np

# Published figures quoted for comparison (see ../shared/notes/research.md).
LNLN_MOSI_AVG = {
    "acc2_has0": 72.55,
    "acc2_non0": 70.94,
    "f1_has0": 72.73,
    "f1_non0": 71.25,
    "acc7": 34.26,
    "mae": 1.046,
    "corr": 0.527,
}
SELFMM_MOSI = {"acc2_non0": 85.46, "f1_non0": 85.43, "acc7": 46.67, "mae": 0.708, "corr": 0.796}
TARGETS = {"mosi_acc2_non0": 80.0, "fer_acc": 68.0, "ravdess_acc": 65.0, "fusion_ms": 2.0}
MODELS = ("fusion", "text", "audio", "vision", "late_fusion")
LABELS = {"text_encoder": "text encoder", "fusion_text_only": "shipped model, text only"}


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head, rows) -> list[str]:
    return [_row(head), _row(["---"] * len(head))] + [_row(r) for r in rows]


def _fallback_note(r: dict) -> list[str]:
    fb = r.get("meta", {}).get("single_modality_fallback")
    if not fb:
        return []
    return [
        f"The shipped runtime answers with a modality's own encoder where that modality is alone and runtime.json lists it "
        f"(`single_modality_fallback`, chosen on validation windows by `python -m models.training.train`'s select stage): {', '.join(fb)}. "
        "Rows of the shipped model with only such a modality therefore equal that encoder's.",
        "",
    ]


def text_section(r: dict) -> list[str]:
    """Section 1: CMU-MOSI and CMU-MOSEI test, text only."""
    if "text" not in r:
        return []
    t = r["text"]
    L = ["## 1. CMU-MOSI and CMU-MOSEI test, text only", ""]
    L += ["Metrics as MMSA computes them (Acc-2 and F1 as has-0 / non-0; Acc-7 clipped and rounded).", ""]
    head = ["corpus", "model", "Acc-2 (has-0 / non-0)", "F1 (has-0 / non-0)", "Acc-7", "MAE", "Corr"]
    rows = []
    for corpus in ("mosi", "mosei"):
        for key, name in (
            ("text_encoder", "text encoder (MiniLM, top 3 layers fine-tuned)"),
            ("fusion_text_only", "shipped model (LNLN runtime), text only present"),
        ):
            m = t[corpus][key]
            rows.append(
                [
                    corpus.upper(),
                    name,
                    f"{m['acc2_has0']:.2f} / {m['acc2_non0']:.2f}",
                    f"{m['f1_has0']:.2f} / {m['f1_non0']:.2f}",
                    f"{m['acc7']:.2f}",
                    f"{m['mae']:.3f}",
                    f"{m['corr']:.3f}",
                ]
            )
        b = t["baseline_minilm_ridge"][corpus]
        rows.append(
            [
                corpus.upper(),
                "baseline: frozen MiniLM sentence embedding + ridge",
                f"{b['acc2_has0']:.2f} / {b['acc2_non0']:.2f}",
                f"{b['f1_has0']:.2f} / {b['f1_non0']:.2f}",
                f"{b['acc7']:.2f}",
                f"{b['mae']:.3f}",
                f"{b['corr']:.3f}",
            ]
        )
    L += _table(head, rows)
    s = SELFMM_MOSI
    L += [
        "",
        f"For reference (not text only): Self-MM on MOSI with all three benchmark modalities, MMSA's table: Acc-2 non-0 {s['acc2_non0']}, F1 {s['f1_non0']}, Acc-7 {s['acc7']}, MAE {s['mae']}, Corr {s['corr']}. "
        f"Target: MOSI Acc-2 non-0 at least {TARGETS['mosi_acc2_non0']:.0f}.",
        "",
    ]
    L += _fallback_note(r)
    c = t["mosi"]["text_encoder_classes"]
    L += [
        f"Three classes (negative < -0.5 <= neutral <= 0.5 < positive), MOSI test, text encoder: accuracy {c['acc']:.2f}, macro F1 {c['f1_macro']:.2f}, ECE {c['ece']:.2f}.",
        "",
    ]
    return L


def lnln_section(r: dict, made: list[str]) -> list[str]:
    """Section 2: LNLN's robustness protocol on MOSI test text, with its figure if drawn."""
    if "lnln_protocol" not in r:
        return []
    p = r["lnln_protocol"]
    L = ["## 2. LNLN's robustness protocol, MOSI test text", ""]
    L += [
        "Every word piece dropped to [UNK] with probability r, seeds 0, 1, 2, averaged over seeds and then over the ten rates. "
        "The paper's figures use all three benchmark modalities; ours are text only, which the protocol's missing text dominates.",
        "",
    ]
    head = ["r", "model", "Acc-2 has-0", "Acc-2 non-0", "F1 non-0", "Acc-7", "MAE", "Corr"]
    rows = []
    for rate in sorted(p["per_rate"], key=float):
        for key in ("text_encoder", "fusion_text_only"):
            m = p["per_rate"][rate][key]
            rows.append(
                [
                    rate,
                    LABELS[key],
                    f"{m['acc2_has0']:.2f}",
                    f"{m['acc2_non0']:.2f}",
                    f"{m['f1_non0']:.2f}",
                    f"{m['acc7']:.2f}",
                    f"{m['mae']:.3f}",
                    f"{m['corr']:.3f}",
                ]
            )
    for key in ("text_encoder", "fusion_text_only"):
        m = p["average"][key]
        rows.append(
            [
                "**average**",
                f"**{LABELS[key]}**",
                f"**{m['acc2_has0']:.2f}**",
                f"**{m['acc2_non0']:.2f}**",
                f"**{m['f1_non0']:.2f}**",
                f"**{m['acc7']:.2f}**",
                f"**{m['mae']:.3f}**",
                f"**{m['corr']:.3f}**",
            ]
        )
    a = LNLN_MOSI_AVG
    rows.append(
        [
            "average",
            "LNLN paper (MOSI, three modalities)",
            a["acc2_has0"],
            a["acc2_non0"],
            a["f1_non0"],
            a["acc7"],
            a["mae"],
            a["corr"],
        ]
    )
    L += _table(head, rows) + [""]
    if "lnln_protocol.png" in made:
        L += ["![LNLN protocol](figures/lnln_protocol.png)", ""]
    return L


def speech_section(r: dict) -> list[str]:
    """Section 3: speech emotion on held-out speakers, one row per corpus."""
    if "speech" not in r:
        return []
    L = ["## 3. Speech emotion, held-out speakers", ""]
    head = [
        "corpus",
        "test speakers",
        "clips",
        "emotion accuracy",
        "classes",
        "mapped sentiment accuracy",
        "sentiment macro F1",
        "sentiment ECE",
    ]
    rows = []
    for k, v in r["speech"].items():
        rows.append(
            [
                k,
                ", ".join(map(str, v["speakers"])),
                v["n"],
                f"{v['emotion_acc']:.2f}",
                v["n_classes"],
                f"{v['sentiment']['acc']:.2f}",
                f"{v['sentiment']['f1_macro']:.2f}",
                f"{v['sentiment']['ece']:.2f}",
            ]
        )
    L += _table(head, rows)
    L += [
        "",
        f"Target: RAVDESS held-out actors, 8 classes, at least {TARGETS['ravdess_acc']:.0f} %. Mapped sentiment leaves out `surprised` (ambiguous).",
        "",
    ]
    return L


def faces_section(r: dict, made: list[str]) -> list[str]:
    """Section 4: facial expression on FER-2013 test, the live path, and the confusion figure if drawn."""
    if "faces" not in r:
        return []
    f = r["faces"]
    L = ["## 4. Facial expression, FER-2013 test", ""]
    L += _table(
        ["images", "7-class accuracy (image + mirror)", "7-class, image only", "mapped sentiment accuracy", "sentiment ECE"],
        [
            [
                f["n"],
                f"{f['emotion_acc']:.2f}",
                f"{f['emotion_acc_no_flip']:.2f}",
                f"{f['sentiment']['acc']:.2f}",
                f"{f['sentiment']['ece']:.2f}",
            ]
        ],
    )
    if "live_path" in f:
        lp = f["live_path"]
        view = "image and mirror averaged" if lp.get("mirror_averaged", True) else "single view, as the fusion was trained"
        L += [
            "",
            f"Through the live path (face mesh on the upscaled image, aligned crop, {view}): a face is found in {lp['face_found']:.1f} % of the test images; on those, accuracy {lp['emotion_acc_on_found']:.2f} % (the raw images, same view: {lp['raw_acc_on_found']:.2f} %).",
        ]
    L += ["", f"Target: at least {TARGETS['fer_acc']:.0f} %.", ""]
    if "confusions.png" in made:
        L += ["![confusion matrices](figures/confusions.png)", ""]
    return L


def _composed_cells(row: dict) -> list[str]:
    """One condition's "Acc-3 / MAE" cells per model, the fusion's flagged where a baseline beats it."""
    best_acc = max(row[m]["acc3"] for m in MODELS[1:])
    best_mae = min(row[m]["mae"] for m in MODELS[1:])
    out = []
    for m in MODELS:
        a, e = row[m]["acc3"], row[m]["mae"]
        txt = f"{a:.1f} / {e:.3f}"
        if m == "fusion":
            ok = a >= best_acc and e <= best_mae
            txt += "" if ok else " (below a baseline)"
        out.append(txt)
    return out


def composed_section(r: dict, made: list[str]) -> list[str]:
    """Sections 5 and 5b: the composed trimodal test set, realistic (with its figures) and class-matched."""
    L = []
    for key, title in (
        ("composed", "5. Composed trimodal test set, realistic"),
        ("composed_class_matched", "5b. Composed trimodal test set, class-matched (as before)"),
    ):
        if key not in r:
            continue
        c = r[key]
        comp = c.get("composition", {})
        L += [f"## {title}", ""]
        if key == "composed":
            L += [
                f"{c['n_windows']} windows, each a MOSI/MOSEI test transcript with a RAVDESS/EmoDB test-speaker clip and a FER-2013 test face (see the model card: composed, not recorded together), "
                f"composed the realistic way (`models.training.composed.REALISTIC`): the voice carries the transcript's class with probability {comp.get('audio_agree')}, the face with {comp.get('vision_agree')} "
                f"(otherwise a random class), and {comp.get('neutral_words')} of the windows have neutral words (MOSI/MOSEI/MELD) with a voice and face that carry the label. "
                "Target: the transcript's label (the voice's and face's class in neutral-words windows). Acc-3 over negative / neutral / positive, MAE on the score. "
                "Baselines: each unimodal encoder alone (the prior where its modality is absent) and a late fusion that averages the present encoders' scores and probabilities weighted by their confidence.",
                "",
            ]
        else:
            L += [
                f"{c['n_windows']} windows whose three modalities all carry the transcript's class (how the set was composed before the realistic one; easier, and rewarding a fusion that trusts acted voices and posed faces).",
                "",
            ]
        L += _fallback_note(r) if key == "composed" else []
        head = ["condition"] + [f"{m} Acc-3 / MAE" for m in MODELS]
        rows = [[f"r = {k}"] + _composed_cells(v) for k, v in sorted(c["rates"].items(), key=lambda kv: float(kv[0]))]
        avg = {
            m: {
                "acc3": np.mean([v[m]["acc3"] for v in c["rates"].values()]),
                "mae": np.mean([v[m]["mae"] for v in c["rates"].values()]),
            }
            for m in MODELS
        }
        rows.append(["**average over r**"] + [f"**{avg[m]['acc3']:.1f} / {avg[m]['mae']:.3f}**" for m in MODELS])
        rows += [[f"only {k}" if k != "T+A+V" else "all (T+A+V)"] + _composed_cells(v) for k, v in c["subsets"].items()]
        L += _table(head, rows)
        L += ["", f"Fusion ECE over all conditions: {c['fusion_ece_all_conditions']:.2f} %."]
        ag = c.get("agreement")
        if ag and ag.get("confidence_conflict") is not None:
            L += [
                f"Mean fused confidence with all three present, no drops: {ag['confidence_agree']:.1f} % where the modalities' classes agree ({ag['n_agree']} windows, Acc-3 {ag['acc3_agree']:.1f} %), "
                f"{ag['confidence_conflict']:.1f} % where they conflict ({ag['n_conflict']}, Acc-3 {ag['acc3_conflict']:.1f} %)."
            ]
        L += [""]
        if key != "composed":
            continue
        for fig in ("composed_rates.png", "composed_subsets.png", "reliability.png"):
            if fig in made:
                L += [f"![{fig}](figures/{fig})", ""]
    return L


def speed_section(r: dict) -> list[str]:
    """Section 6: the fusion forward pass's time (or the error that stopped its measurement)."""
    if "speed" not in r:
        return []
    s = r["speed"]
    L = ["## 6. Speed", ""]
    if "error" in s:
        L += [s["error"], ""]
    else:
        L += [
            f"Fusion forward pass in onnxruntime, batch 1, one thread, a 3 s window (20 word pieces, 75 audio states, 15 frames): "
            f"median {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms over {s['n']} runs on {s['machine']}. Target: at most {TARGETS['fusion_ms']:.0f} ms.",
            "",
        ]
    return L


def training_time_section(r: dict) -> list[str]:
    """The "Training time" section: the last training run's seconds per stage, and where the face encoder was trained."""
    meta = r.get("meta", {})
    tt = meta.get("train_timings_s")
    if not tt:
        return []
    total = sum(tt.values())
    L = [
        "## Training time",
        "",
        "The last `python -m models.training.train` run of each stage on this machine (2 CPU cores), seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in tt.items())
        + f"; {total / 60:.0f} min in all. "
        "A stage not listed was not run in this cache folder (its weights came from an earlier run).",
        "",
    ]
    ft = meta.get("face_encoder_training") or {}
    if ft.get("device", "cpu") != "cpu":
        L += [
            f"The shipped face encoder was trained with `--device {ft['device']}` ({ft.get('epochs', '?')} epochs, weights of epoch "
            f"{ft.get('epoch', '?')}, the best on validation); the model card's \"Face encoder recipe\" gives its time and the CPU's.",
            "",
        ]
    return L
