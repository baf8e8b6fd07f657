"""The real-recordings report: clip-level accuracy tables, the coherence and flip counts,
and the document ``docs/real-recordings.md`` written from ``streaming.evaluate_real``'s
report dict (``write_document(report, docs) -> path``). In: the per-clip records that
``streaming.evaluate_real`` builds (``window_record``, ``clip_predictions``); no model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.types import MODALITIES, SENTIMENT_CLASSES


def flips(windows: list[dict], smoothed: bool = False, min_conf: float = 0.8) -> int:
    """Negative <-> positive changes between adjacent windows, both at confidence >= min_conf."""

    def lc(w):
        x = w["smoothed"] if smoothed else w
        return x["label"], x["confidence"]

    n = 0
    for a, b in zip(windows, windows[1:]):
        (la, ca), (lb, cb) = lc(a), lc(b)
        n += {la, lb} == {"negative", "positive"} and ca >= min_conf and cb >= min_conf
    return n


def voice_in_domain(real: list[dict], rav: list[dict]) -> dict[str, float]:
    """Mean in-domain score of the voice over each real clip's windows (by file) and over
    the RAVDESS test actors' windows."""

    def mean(wins):
        v = [w["modalities"]["audio"]["in_domain"] for w in wins if w["modalities"]["audio"]["in_domain"] is not None]
        return round(float(np.mean(v)), 3) if v else None

    out = {c["file"]: mean(c["windows"]) for c in real}
    out["RAVDESS test actors"] = mean([w for c in rav for w in c["windows"]])
    return {k: v for k, v in out.items() if v is not None}


def accuracy_table(clips: list[dict]) -> dict[str, dict]:
    """Per source: clips with a prediction, correct ones, accuracy (%)."""
    out = {}
    for src in ("fused", "late_fusion", *[m.value for m in MODALITIES]):
        have = [c for c in clips if c["clip"][src] is not None]
        ok = sum(c["clip"][src] == c["truth"] for c in have)
        out[src] = {"n": len(have), "correct": ok, "acc": round(100 * ok / len(have), 1) if have else None}
    return out


def coherence(clips: list[dict]) -> dict[str, int]:
    wins = [w for c in clips for w in c["windows"]]
    ests = [m for w in wins for m in w["modalities"].values() if m["coherent"] is not None]
    return {
        "windows": len(wins),
        "incoherent": sum(not w["coherent"] for w in wins),
        "beyond": sum(w["beyond"] for w in wins),
        "flips_window": sum(flips(c["windows"]) for c in clips),
        "flips_smoothed": sum(flips(c["windows"], True) for c in clips),
        "pairs": sum(max(len(c["windows"]) - 1, 0) for c in clips),
        "estimates": len(ests),
        "estimates_incoherent": sum(not m["coherent"] for m in ests),
    }


# ---------------------------------------------------------------- the document
def _fmt_est(m: dict) -> str:
    if m["score"] is None:
        return f"— ({m['state']}{': ' + m['reason'] if m['reason'] else ''})"
    state = "" if m["state"] == "OK" else f" [{m['state']}: {m['reason']}]"
    return f"{m['label']} {m['score']:+.2f} ({m['confidence']:.2f}){state}"


def write_document(report: dict, docs: Path) -> Path:
    L = [
        "# Real recordings",
        "",
        f"Written by `python -m streaming.evaluate_real` on {report['meta']['evaluated']} "
        f"({report['meta']['machine']}, {report['meta']['seconds']} s). The live code path: each clip replayed as "
        "`streaming.simulate` replays it, the shipped model and recogniser, no faults. These clips are a check, never "
        "training, selection or calibration data. Clip-level class: the argmax of the mean of the clip's window "
        "probabilities. Late fusion: the confidence-weighted average of the modalities' own estimates.",
        "",
    ]
    real, rav = report["real_clips"], report["ravdess"]
    allc = real + rav
    L += [
        "## Summary",
        "",
        "| set | clips | fused | text | audio | vision | late fusion |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, clips in (("real clips (../shared/data/real)", real), ("RAVDESS test actors, voice + words", rav), ("all", allc)):
        t = accuracy_table(clips)

        def cell(k, t=t):
            return "n/a" if t[k]["acc"] is None else f"{t[k]['acc']:.1f} % ({t[k]['correct']}/{t[k]['n']})"

        L.append(
            f"| {name} | {len(clips)} | {cell('fused')} | {cell('text')} | {cell('audio')} | {cell('vision')} | {cell('late_fusion')} |"
        )
    co = report["coherence"]
    rr, dm = co["real_and_ravdess"], co["demo"]
    L += [
        "",
        "## Trust and stability",
        "",
        f"- Bounds: windows whose fused score lies more than 0.5 beyond every present modality's own estimate: "
        f"{rr['beyond']} of {rr['windows']} (real clips and RAVDESS), {dm.get('beyond', 0)} on the demo clip "
        "(clean and under faults).",
        f"- Flips (negative <-> positive between adjacent windows, both at confidence >= 0.8): real clips "
        f"{co['real']['flips_window']} per-window / {co['real']['flips_smoothed']} smoothed over {co['real']['pairs']} "
        f"adjacent pairs; RAVDESS {co['ravdess']['flips_window']} / {co['ravdess']['flips_smoothed']} over "
        f"{co['ravdess']['pairs']}.",
    ]
    if dm.get("flips"):
        for name, f in dm["flips"].items():
            L.append(f"- Demo clip ({name}): {f['window']} per-window / {f['smoothed']} smoothed flips over {f['pairs']} pairs.")
        for kind in ("window", "smoothed"):
            hops = ", ".join(
                f"line {x['line']} {x['from']}->{x['to']}: {x['hops'] if x['hops'] is not None else 'never'}"
                for x in dm["follow"][kind]
            )
            L.append(
                f"- Demo clip, hops until the {kind} label shows each scripted change (0 = the first window wholly "
                f"in the new line): {hops}."
            )
    if report.get("voice_in_domain"):
        vi = report["voice_in_domain"]
        L.append(
            "- Voice in-domain score (models.domain), mean over windows: "
            + ", ".join(f"{k} {v:.2f}" for k, v in vi.items())
            + "."
        )
    L += [
        "",
        f"Coherence: {co['real_and_ravdess']['incoherent']} of {co['real_and_ravdess']['windows']} windows "
        f"(real clips and RAVDESS) and {co['real_and_ravdess']['estimates_incoherent']} of {co['real_and_ravdess']['estimates']} "
        f"per-modality estimates have a label outside their score's interval; the demo clip under `{co['demo']['faults']}`: "
        f"{co['demo']['incoherent']} of {co['demo']['windows']} windows. Every real clip yields at least one window: "
        f"{'yes' if all(c['windows'] for c in real) else '**no**'} (fewest: {min(len(c['windows']) for c in real)}).",
        "",
    ]
    if rav:
        agree = [c for c in rav if c["clip"]["fused"] is not None and c["clip"]["audio"] is not None]
        same = sum(c["clip"]["fused"] == c["clip"]["audio"] for c in agree)
        L += [
            f"RAVDESS: the words carry nothing, so the fused class should follow the voice: it equals the voice's own "
            f"class in {same} of {len(agree)} clips.",
            "",
        ]
    L += [
        "## The real clips",
        "",
        "| clip | corpus | s | truth | windows | fused (clip) | text | audio | vision | late fusion | faces: mesh / with detector | leakage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in real:
        p = c["clip"]

        def mark(k, p=p, c=c):
            if p[k] is None:
                return "—"
            return f"{p[k]}" + (" ✓" if p[k] == c["truth"] else " ✗")

        L.append(
            f"| {c['file']} | {c['corpus']} | {c['duration_s']:.1f} | {c['truth']} ({c['emotion']}) | {len(c['windows'])} | "
            f"{mark('fused')} | {mark('text')} | {mark('audio')} | {mark('vision')} | {mark('late_fusion')} | "
            f"{c['faces']['mesh_only']:.0f} % / {c['faces']['with_fallback']:.0f} % | {c['leakage'] or '—'} |"
        )
    L += ["", "### Windows", ""]
    for c in real:
        L += [
            f'**{c["file"]}** (truth {c["truth"]}). Official transcript: "{c["transcript_official"]}"; recognised: '
            f'"{c["transcript_recognised"]}".',
            "",
            "| window (s) | fused: label, score (confidence) | text | audio | vision | late fusion |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for w in c["windows"]:
            m = w["modalities"]
            lf = w["late_fusion"]
            L.append(
                f"| {w['t_start']:.1f}–{w['t_end']:.1f} | {w['label']} {w['score']:+.2f} ({w['confidence']:.2f}) | "
                f"{_fmt_est(m['text'])} | {_fmt_est(m['audio'])} | {_fmt_est(m['vision'])} | "
                f"{SENTIMENT_CLASSES[int(np.argmax(lf['probs']))]} {lf['score']:+.2f} |"
            )
        L.append("")
    if rav:
        L += [
            "## RAVDESS test actors: voice with its statement",
            "",
            "Clip-level accuracy by emotion (fused / audio alone / text alone):",
            "",
            "| emotion | truth | clips | fused | audio | text |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for emo in sorted({c["emotion"] for c in rav}):
            cs = [c for c in rav if c["emotion"] == emo]
            t = accuracy_table(cs)
            L.append(
                f"| {emo} | {cs[0]['truth']} | {len(cs)} | {t['fused']['acc']:.0f} % | {t['audio']['acc']:.0f} % | {t['text']['acc']:.0f} % |"
            )
        L.append("")
    path = docs / "real-recordings.md"
    path.write_text("\n".join(L) + "\n")
    return path
