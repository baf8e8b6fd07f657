"""The evaluation's figures: ``plots(report, folder, reliability) -> file names`` draws the
LNLN-protocol curve, the composed conditions per model and the reliability diagram into
``docs/figures/`` (``models.training.report.write_document`` links them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.training.report import LNLN_MOSI_AVG, MODELS


def plots(r: dict, figs: Path, reliability) -> list[str]:
    """Draws the report's figures into ``figs``; returns the file names made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if "lnln_protocol" in r:
        pr = r["lnln_protocol"]["per_rate"]
        rates = sorted(pr, key=float)
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for k, lab in (("text_encoder", "text encoder"), ("fusion_text_only", "shipped model, text only")):
            ax[0].plot([float(x) for x in rates], [pr[x][k]["acc2_non0"] for x in rates], "o-", label=lab)
            ax[1].plot([float(x) for x in rates], [pr[x][k]["mae"] for x in rates], "o-", label=lab)
        ax[0].axhline(LNLN_MOSI_AVG["acc2_non0"], ls="--", c="gray", label="LNLN paper, average over rates")
        ax[1].axhline(LNLN_MOSI_AVG["mae"], ls="--", c="gray", label="LNLN paper, average over rates")
        ax[0].set(xlabel="missing rate r", ylabel="Acc-2 non-0 (%)", title="MOSI test, text")
        ax[1].set(xlabel="missing rate r", ylabel="MAE", title="MOSI test, text")
        ax[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figs / "lnln_protocol.png", dpi=110)
        plt.close(fig)
        made.append("lnln_protocol.png")
    if "composed" in r:
        c = r["composed"]["rates"]
        rates = sorted(c, key=float)
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for m in MODELS:
            ax[0].plot([float(x) for x in rates], [c[x][m]["acc3"] for x in rates], "o-", label=m)
            ax[1].plot([float(x) for x in rates], [c[x][m]["mae"] for x in rates], "o-", label=m)
        ax[0].set(xlabel="missing rate r (all modalities)", ylabel="3-class accuracy (%)", title="composed test")
        ax[1].set(xlabel="missing rate r (all modalities)", ylabel="MAE", title="composed test")
        ax[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figs / "composed_rates.png", dpi=110)
        plt.close(fig)
        s = r["composed"]["subsets"]
        names = list(s)
        fig, ax = plt.subplots(figsize=(10, 3.6))
        width = 0.16
        for i, m in enumerate(MODELS):
            ax.bar(np.arange(len(names)) + (i - 2) * width, [s[n][m]["acc3"] for n in names], width, label=m)
        ax.set_xticks(np.arange(len(names)), names)
        ax.set(ylabel="3-class accuracy (%)", title="composed test: modality subsets (T text, A audio, V vision)")
        ax.legend(fontsize=8, ncol=5)
        fig.tight_layout()
        fig.savefig(figs / "composed_subsets.png", dpi=110)
        plt.close(fig)
        made += ["composed_rates.png", "composed_subsets.png"]
    conf = [(k, r[k]) for k in ("faces",) if k in r] + [(f"speech {k}", v) for k, v in r.get("speech", {}).items()]
    if conf:
        fig, axes = plt.subplots(1, len(conf), figsize=(4.2 * len(conf), 4))
        for ax, (name, v) in zip(np.atleast_1d(axes), conf):
            m = np.array(v["confusion"], float)
            m = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(len(v["class_names"])), v["class_names"], rotation=60, fontsize=7)
            ax.set_yticks(range(len(v["class_names"])), v["class_names"], fontsize=7)
            ax.set_title(f"{name}: {v['emotion_acc']:.1f} %", fontsize=9)
        fig.tight_layout()
        fig.savefig(figs / "confusions.png", dpi=110)
        plt.close(fig)
        made.append("confusions.png")
    if reliability is not None:
        conf_, corr = np.asarray(reliability["confidence"]), np.asarray(reliability["correct"])
        edges = np.linspace(0, 1, 16)
        idx = np.clip(np.digitize(conf_, edges[1:-1], right=True), 0, 14)
        xs = [conf_[idx == b].mean() for b in range(15) if (idx == b).any()]
        ys = [corr[idx == b].mean() for b in range(15) if (idx == b).any()]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot([0, 1], [0, 1], "--", c="gray")
        ax.plot(xs, ys, "o-")
        ax.set(xlabel="confidence", ylabel="accuracy", title="fusion, composed test, all conditions")
        fig.tight_layout()
        fig.savefig(figs / "reliability.png", dpi=110)
        plt.close(fig)
        made.append("reliability.png")
    return made
