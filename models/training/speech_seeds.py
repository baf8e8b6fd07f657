"""The speech figures over several training seeds: ``python -m models.training.speech_seeds``.

For each seed the speech emotion encoder is trained as ``models.training.train``'s audio stage
trains it (seed 0 is the run that ships, read from <cache>/run when it is there), its
in-domain statistics and calibration are fitted (domain, calibrate stages), and then:

- RAVDESS and EmoDB held-out speakers: emotion accuracy per clip (the mean of its windows'
  logits) and per window, and 3-class sentiment accuracy (``models.training.evaluate``);
- the RAVDESS test actors' clips replayed through the live pipeline with their statement
  as typed text: clip-level accuracy of the voice's own estimate
  (``streaming.evaluate_real``);
- the voice's own estimate on the neutral MELD clip of ``<data>/real`` (mean over its
  windows) and its in-domain score.

The fusion model is the shipped one; only the per-modality voice estimates are read, which
do not depend on it. Writes docs/speech-seeds.json and prints mean and spread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.paths import REPO_ROOT, assets_dir, cache_dir
from models.types import Modality

MELD_CLIP = "meld_train_dia0_utt0.mp4"


def _seed_run(cache: Path, seed: int) -> Path:
    """The run folder of a seed: <cache>/run for 0, else <cache>/seeds/s{seed} sharing the
    main run's text and face artefacts."""
    main = cache / "run"
    if seed == 0:
        return main
    run = cache / "seeds" / f"s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    for f in main.iterdir():
        if f.name.startswith(("text_states_", "face_views_")) or f.name in (
            "text_encoder.safetensors",
            "face_encoder.safetensors",
        ):
            dst = run / f.name
            if not dst.exists():
                dst.symlink_to(f.resolve())
    return run


def model_for(run: Path, assets: Path):
    """A SentimentModel with the run's encoders, calibration and domain stats and the
    shipped fusion (its per-modality estimates are the run's)."""
    from models import checkpoint
    from models.fusion.lnln import LNLN, LNLNConfig
    from models.runtime import SentimentModel
    from models.training.predict import load_stack

    stack = load_stack(run)
    fusion, _ = checkpoint.load(assets / "weights" / "fusion.safetensors", LNLN, LNLNConfig)
    runtime = json.loads((assets / "runtime.json").read_text())
    calib = json.loads((run / "calibration.json").read_text())
    return SentimentModel(stack, fusion, {**runtime, **calib}, None, threads=1)


def seed_figures(model, cache: Path, root: Path) -> dict:
    from models.training.evaluate import evaluate_speech
    from streaming.evaluate_real import evaluate_ravdess
    from streaming.real_report import accuracy_table
    from streaming.simulate import build_pipeline, replay

    sp = evaluate_speech(model, cache, root)
    rav = evaluate_ravdess(model, root)
    pipe = build_pipeline("", asr_mode="off", model=model, asr=None)
    try:
        wins = replay(pipe, root / "real" / MELD_CLIP, progress=False)
    finally:
        pipe.close()
    ests = [w.result.per_modality.get(Modality.AUDIO) for w in wins]
    ests = [e for e in ests if e is not None]
    return {
        "ravdess_emotion_acc": sp["ravdess"]["emotion_acc"],
        "ravdess_emotion_acc_per_window": sp["ravdess"]["emotion_acc_per_window"],
        "emodb_emotion_acc": sp["emodb"]["emotion_acc"],
        "ravdess_sentiment_acc": sp["ravdess"]["sentiment"]["acc"],
        "ravdess_test_actors_voice_clip_acc": accuracy_table(rav)["audio"]["acc"],
        "meld_clip_voice_score": round(float(np.mean([e.score for e in ests])), 3) if ests else None,
        "meld_clip_voice_in_domain": round(float(np.mean([e.in_domain for e in ests])), 3) if ests else None,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data")
    ap.add_argument("--cache")
    ap.add_argument("--assets")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "speech-seeds.json"))
    args = ap.parse_args(argv)
    from models.paths import data_root
    from models.training.calibrate import calibrate, fit_domain
    from models.training.config import TrainConfig
    from models.training.speech import train_audio

    torch.set_num_threads(2)
    cache, assets, root = cache_dir(args.cache), assets_dir(args.assets), data_root(args.data)
    out = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        run = _seed_run(cache, seed)
        cfg = TrainConfig(seed=seed)
        if not (run / "audio_encoder.safetensors").exists():  # a seed trained before is reused
            train_audio(cfg, cache, run, root)
        if seed != 0 or not (run / "domain.safetensors").exists():
            fit_domain(cfg, cache, run, root)
            calibrate(cfg, cache, run, root)
        out[seed] = seed_figures(model_for(run, assets), cache, root)
        out[seed]["seconds"] = round(time.time() - t0)
        print(seed, json.dumps(out[seed]))
    keys = [k for k in next(iter(out.values())) if k != "seconds"]
    summary = {}
    for k in keys:
        v = np.array([o[k] for o in out.values() if o[k] is not None], float)
        summary[k] = {
            "mean": round(float(v.mean()), 3),
            "std": round(float(v.std(ddof=1)), 3) if len(v) > 1 else 0.0,
            "min": round(float(v.min()), 3),
            "max": round(float(v.max()), 3),
        }
    Path(args.out).write_text(json.dumps({"seeds": out, "summary": summary}, indent=1))
    for k, s in summary.items():
        print(f"{k}: {s['mean']} +- {s['std']} (min {s['min']}, max {s['max']})")


if __name__ == "__main__":
    main()
