"""Turns the evaluation report (``docs/evaluation.json``) into ``docs/evaluation.md`` and plots.

In: the report dict that ``python -m models.training.evaluate`` builds (and the fused
confidences of the composed test windows, for the reliability plot); out:
``docs/evaluation.md``, ``docs/figures/*.png`` (``write_document``) and the headline
figures section of ``assets/MODEL_CARD.md`` (``update_model_card``).
"""

from __future__ import annotations

from pathlib import Path

from models.training.report_sections import (
    LABELS,
    LNLN_MOSI_AVG,
    MODELS,
    SELFMM_MOSI,
    TARGETS,
    composed_section,
    faces_section,
    lnln_section,
    speech_section,
    speed_section,
    text_section,
    training_time_section,
)

# The constants live with the sections and are re-exported here (report_plots imports them from here).
__all__ = ["LABELS", "LNLN_MOSI_AVG", "MODELS", "SELFMM_MOSI", "TARGETS", "headline", "update_model_card", "write_document"]


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
    """Writes ``docs/evaluation.md`` (the sections of ``report_sections`` in order) and its figures."""
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
    L += text_section(r)
    L += lnln_section(r, made)
    L += speech_section(r)
    L += faces_section(r, made)
    L += composed_section(r, made)
    L += speed_section(r)
    L += training_time_section(r)
    (docs / "evaluation.md").write_text("\n".join(L) + "\n")
