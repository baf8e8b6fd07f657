"""Turns the evaluation report (``docs/evaluation.json``) into ``docs/evaluation.md`` and plots.

In: the report dict that ``python -m models.training.evaluate`` builds (and the fused
confidences of the composed test windows, for the reliability plot); out:
``docs/evaluation.md``, ``docs/figures/*.png`` (``write_document``) and the headline
figures section of ``assets/MODEL_CARD.md`` (``update_model_card``).
"""

from __future__ import annotations

from pathlib import Path

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


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head, rows) -> list[str]:
    return [_row(head), _row(["---"] * len(head))] + [_row(r) for r in rows]


def _conditions(c: dict) -> dict:
    every = ("text", "audio", "vision")
    conds = {f"r = {k}": (v, every) for k, v in c["rates"].items()}
    for k, v in c["subsets"].items():  # keys like "T+A"
        conds["all (T+A+V)" if k == "T+A+V" else f"only {k}"] = (v, [m for m in every if m[0].upper() in k.split("+")])
    return conds


def _below(conds: dict) -> list[str]:
    below = []
    for name, (v, present) in conds.items():
        if v["fusion"]["acc3"] < max(v[m]["acc3"] for m in present) or v["fusion"]["mae"] > min(v[m]["mae"] for m in present):
            below.append(name)
    return below


def headline(r: dict) -> list[str]:
    """Markdown bullets of the headline figures, each target marked met or missed."""

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    L = []
    if "text" in r:
        for corpus in ("mosi", "mosei"):
            m, b = r["text"][corpus]["text_encoder"], r["text"]["baseline_minilm_ridge"][corpus]
            line = (
                f"- {corpus.upper()} test, text: Acc-2 non-0 {m['acc2_non0']:.1f} (has-0 {m['acc2_has0']:.1f}), "
                f"F1 {m['f1_non0']:.1f}, Acc-7 {m['acc7']:.1f}, MAE {m['mae']:.3f}, Corr {m['corr']:.3f}; "
                f"baseline (frozen MiniLM + ridge) Acc-2 non-0 {b['acc2_non0']:.1f}, MAE {b['mae']:.3f}"
            )
            if corpus == "mosi":
                line += f". Target Acc-2 non-0 >= {TARGETS['mosi_acc2_non0']:.0f}: {mark(m['acc2_non0'] >= TARGETS['mosi_acc2_non0'])}"
            L.append(line + ".")
    if "lnln_protocol" in r:
        a = r["lnln_protocol"]["average"]
        t, f = a["text_encoder"], a["fusion_text_only"]
        L.append(
            f"- LNLN's protocol (MOSI test text, r = 0.0 ... 0.9, averaged): Acc-2 has-0 / non-0 {t['acc2_has0']:.2f} / {t['acc2_non0']:.2f}, "
            f"MAE {t['mae']:.3f}, Corr {t['corr']:.3f} (text encoder); the shipped model with text only {f['acc2_has0']:.2f} / {f['acc2_non0']:.2f}, MAE {f['mae']:.3f}; "
            f"the LNLN paper, three modalities: {LNLN_MOSI_AVG['acc2_has0']} / {LNLN_MOSI_AVG['acc2_non0']}, MAE {LNLN_MOSI_AVG['mae']}, Corr {LNLN_MOSI_AVG['corr']}."
        )
    if "speech" in r:
        sp = r["speech"]
        rv = sp["ravdess"]["emotion_acc"]
        pw = sp["ravdess"].get("emotion_acc_per_window")
        L.append(
            "- Speech emotion, held-out speakers (a clip: the mean of its 3 s windows, each encoded alone as live"
            + (f"; per window {pw:.1f} %" if pw is not None else "")
            + f"): RAVDESS 8-class {rv:.1f} % (mapped sentiment {sp['ravdess']['sentiment']['acc']:.1f} %), "
            f"EmoDB 7-class {sp['emodb']['emotion_acc']:.1f} % (mapped sentiment {sp['emodb']['sentiment']['acc']:.1f} %). "
            f"Target RAVDESS >= {TARGETS['ravdess_acc']:.0f} %: {mark(rv >= TARGETS['ravdess_acc'])}."
        )
    if "faces" in r:
        fa = r["faces"]
        L.append(
            f"- FER-2013 test: 7-class {fa['emotion_acc']:.2f} % with image and mirror averaged (mapped sentiment {fa['sentiment']['acc']:.1f} %), "
            f"{fa['emotion_acc_no_flip']:.2f} % single view (what the live runtime uses, as the fusion was trained). "
            f"Target >= {TARGETS['fer_acc']:.0f} %: {mark(fa['emotion_acc'] >= TARGETS['fer_acc'])}."
        )
    for key, name in (("composed", "realistic"), ("composed_class_matched", "class-matched, as composed before")):
        if key not in r:
            continue
        c = r[key]
        conds = _conditions(c)
        below = _below(conds)
        z = c["rates"]["0.0"]
        L.append(
            f"- Composed trimodal test, {name} ({c['n_windows']} windows): fusion Acc-3 {z['fusion']['acc3']:.1f} %, MAE {z['fusion']['mae']:.3f} with all three; "
            f"best unimodal {max(z[m]['acc3'] for m in ('text', 'audio', 'vision')):.1f} %, confidence-weighted late fusion {z['late_fusion']['acc3']:.1f} %. "
            f"Fusion at or above the best unimodal encoder (Acc-3 and MAE) in {len(conds) - len(below)} of {len(conds)} conditions"
            + (f"; below in: {', '.join(below)}" if below else "")
            + f": {mark(not below)}. Fusion ECE {c['fusion_ece_all_conditions']:.2f} %."
        )
        ag = c.get("agreement")
        if ag and ag.get("confidence_conflict") is not None:
            gap = ag["confidence_agree"] - ag["confidence_conflict"]
            L.append(
                f"  - Windows whose modalities' classes agree ({ag['n_agree']}): mean fused confidence {ag['confidence_agree']:.1f} %, Acc-3 {ag['acc3_agree']:.1f} %; "
                f"conflicting ({ag['n_conflict']}): {ag['confidence_conflict']:.1f} %, Acc-3 {ag['acc3_conflict']:.1f} % "
                f"(gap {gap:.1f} points; target >= 15: {mark(gap >= 15)})."
            )
        if "coherence" in c and key == "composed":
            h = c["coherence"]
            L.append(
                f"- Coherent output (composed test, all {len(conds)} conditions): {h['fused_incoherent']} of {h['fused_windows']} fused windows "
                f"and {h['estimates_incoherent']} of {h['estimates']} unimodal estimates have a label outside their score's interval "
                f"(target 0: {mark(h['fused_incoherent'] == 0 and h['estimates_incoherent'] == 0)}); the one clamp left, on the text "
                f"encoder's raw score, fired in {h['text_clamped']} of {h['text_rows']} windows with text."
            )
    if "speed" in r and "error" not in r["speed"]:
        sp = r["speed"]
        extra = (
            f"; with the agreement step and the smoothing {sp['with_agreement_and_smoothing_p50_ms']:.2f} ms"
            if "with_agreement_and_smoothing_p50_ms" in sp
            else ""
        )
        L.append(
            f"- Fusion forward pass, onnxruntime, batch 1, one thread: median {sp['p50_ms']:.2f} ms, p95 {sp['p95_ms']:.2f} ms{extra} on {sp['machine']}. "
            f"Target <= {TARGETS['fusion_ms']:.0f} ms: {mark(sp['p50_ms'] <= TARGETS['fusion_ms'])}."
        )
    return L


def update_model_card(r: dict, card: Path) -> None:
    """Replace what follows ``## Headline figures`` in the model card with ``headline(r)``."""
    if not card.exists():
        return
    text = card.read_text()
    key = "## Headline figures"
    if key not in text:
        text = text.rstrip() + "\n\n" + key + "\n"
    head = text[: text.index(key) + len(key)]
    when = r.get("meta", {}).get("evaluated", "?")
    body = [f"From `docs/evaluation.md` (evaluated {when}; updated by `python -m models.training.evaluate`):", "", *headline(r)]
    card.write_text(head + "\n\n" + "\n".join(body) + "\n")


def write_document(r: dict, docs: Path, reliability=None) -> None:
    figs = docs / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    from models.training.report_plots import plots

    made = plots(r, figs, reliability)
    L = [
        "# Evaluation",
        "",
        "Written by `python -m models.training.evaluate` from `docs/evaluation.json`; do not edit by hand.",
        "",
    ]
    meta = r.get("meta", {})
    L += [f"Evaluated {meta.get('evaluated', '?')} on the weights in `assets/`. Accuracies and F1 in %.", ""]
    L += ["## Headline figures", "", *headline(r), ""]

    if "text" in r:
        t = r["text"]
        L += ["## 1. CMU-MOSI and CMU-MOSEI test, text only", ""]
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

    if "lnln_protocol" in r:
        p = r["lnln_protocol"]
        L += ["## 2. LNLN's robustness protocol, MOSI test text", ""]
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

    if "speech" in r:
        L += ["## 3. Speech emotion, held-out speakers", ""]
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

    if "faces" in r:
        f = r["faces"]
        L += ["## 4. Facial expression, FER-2013 test", ""]
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

        def cells(row):
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

        rows = [[f"r = {k}"] + cells(v) for k, v in sorted(c["rates"].items(), key=lambda kv: float(kv[0]))]
        avg = {
            m: {
                "acc3": np.mean([v[m]["acc3"] for v in c["rates"].values()]),
                "mae": np.mean([v[m]["mae"] for v in c["rates"].values()]),
            }
            for m in MODELS
        }
        rows.append(["**average over r**"] + [f"**{avg[m]['acc3']:.1f} / {avg[m]['mae']:.3f}**" for m in MODELS])
        rows += [[f"only {k}" if k != "T+A+V" else "all (T+A+V)"] + cells(v) for k, v in c["subsets"].items()]
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

    if "speed" in r:
        s = r["speed"]
        L += ["## 6. Speed", ""]
        if "error" in s:
            L += [s["error"], ""]
        else:
            L += [
                f"Fusion forward pass in onnxruntime, batch 1, one thread, a 3 s window (20 word pieces, 75 audio states, 15 frames): "
                f"median {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms over {s['n']} runs on {s['machine']}. Target: at most {TARGETS['fusion_ms']:.0f} ms.",
                "",
            ]
    tt = meta.get("train_timings_s")
    if tt:
        total = sum(tt.values())
        L += [
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
    (docs / "evaluation.md").write_text("\n".join(L) + "\n")
