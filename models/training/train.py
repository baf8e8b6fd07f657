"""Train every model from one command: ``python -m models.training.train``.

Stages (``--stages``, comma separated, default all but face_swa and fusion_head, in this
order; the module that runs each in brackets):
  cache      features of every corpus through the live extractors [feature_cache]
  text       text sentiment encoder on CMU-MOSI + CMU-MOSEI train (MOSI scale + 3 classes) [text]
  text_states  the text encoder's outputs for every sentence and dropped copy (for fusion) [text]
  audio      speech emotion encoder on RAVDESS + EmoDB train speakers [speech]
  face       facial expression encoder on FER-2013 train [face]
  face_swa   (not by default) stochastic weight averaging of the face encoder [face]
  views      face-encoder outputs of jittered views of every FER-2013 image (for windows) [face]
  domain     in-domain statistics of each encoder's window summaries (``models.domain``) [calibrate]
  calibrate  temperatures of the unimodal encoders on validation data [calibrate]
  fusion     the fusion model (``--set fusion_model=lnln|dashfusion|hme``, default lnln) on
             composed trimodal windows with LNLN's missing-data scheme [fusion]
  fusion_head  (not by default) retrains only the fusion's ordinal head on a trained trunk
             (the trunk frozen; an earlier checkpoint's score/class heads are replaced;
             ``--set fusion_head_scope=top`` also retrains the cross block and output norm) [fusion]
  select     per modality, whether its encoder alone beats the fusion when it is the only
             one present (validation windows); runtime.json's single_modality_fallback [fusion]
  package    fp16 safetensors + configs into assets/ [package] (then run
             models.training.export, models.training.evaluate)

Everything runs on the CPU with fixed seeds, except that the face stage trains on a CUDA
GPU when one is present (``--device``; initial weights, batch order and augmentation are
drawn on the CPU either way, dropout on the device).
Intermediate weights go to <cache>/run/. ``--set FIELD=VALUE`` overrides a TrainConfig field
(``models.training.config``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from models.paths import assets_dir, cache_dir
from models.training.calibrate import calibrate, fit_domain
from models.training.config import TrainConfig, apply_overrides
from models.training.face import face_swa, face_views, train_face
from models.training.feature_cache import cache_features
from models.training.fusion import select, train_fusion, train_fusion_head
from models.training.package import package
from models.training.speech import train_audio
from models.training.text import text_states, train_text

STAGES = (
    "cache",
    "text",
    "text_states",
    "audio",
    "face",
    "face_swa",
    "views",
    "domain",
    "calibrate",
    "fusion",
    "fusion_head",
    "select",
    "package",
)
#: What a plain run does. face_swa is optional: 4 SWA epochs took the validation accuracy
#: from 68.5 to 67.6 in our run, so it is not run unless asked for. fusion_head is for a
#: trunk trained before the ordinal head existed (the fusion stage trains the head itself).
DEFAULT_STAGES = tuple(s for s in STAGES if s not in ("face_swa", "fusion_head"))


def _without_assets(fn):
    return lambda cfg, cache, run, data_root, assets: fn(cfg, cache, run, data_root)


STAGE_FUNCTIONS = {
    "cache": _without_assets(cache_features),
    "text": _without_assets(train_text),
    "text_states": _without_assets(text_states),
    "audio": _without_assets(train_audio),
    "face": _without_assets(train_face),
    "face_swa": _without_assets(face_swa),
    "views": _without_assets(face_views),
    "domain": _without_assets(fit_domain),
    "calibrate": _without_assets(calibrate),
    "fusion": _without_assets(train_fusion),
    "fusion_head": _without_assets(train_fusion_head),
    "select": _without_assets(select),
    "package": package,
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="comma-separated subset of " + ",".join(STAGES))
    ap.add_argument("--data", help="data root (default ../shared/data or $MSA_DATA_ROOT)")
    ap.add_argument("--cache", help="feature cache and run folder (default .cache/)")
    ap.add_argument("--assets", help="where package writes (default assets/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="cap samples per stage for a smoke run")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every stage's epochs")
    ap.add_argument(
        "--device", default="auto", choices=("cpu", "cuda", "auto"), help="where the face stage trains (auto: cuda if present)"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override a TrainConfig field, e.g. face_epochs=40"
    )
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = set(stages) - set(STAGES)
    if bad:
        ap.error(f"unknown stages {sorted(bad)}")
    cfg = TrainConfig(seed=args.seed, limit=args.limit)
    if any(item.partition("=")[0].strip() == "device" for item in args.set):
        ap.error("the face stage's device is set with --device, not --set")
    try:
        apply_overrides(cfg, args.set)
    except ValueError as e:
        ap.error(str(e))
    cfg.device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if cfg.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    if args.epochs_scale != 1.0:
        for f in ("text_epochs", "audio_epochs", "face_epochs", "fusion_epochs"):
            setattr(cfg, f, max(1, round(getattr(cfg, f) * args.epochs_scale)))
    torch.set_num_threads(cfg.threads)
    cache = cache_dir(args.cache)
    run = cache / "run"
    run.mkdir(parents=True, exist_ok=True)
    data_root = args.data
    timings = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.time()
        print(f"== {stage}")
        STAGE_FUNCTIONS[stage](cfg, cache, run, data_root, assets_dir(args.assets))
        # the fusion model's stages are timed under its name (LNLN keeps the plain keys)
        key = f"{stage}:{cfg.fusion_model}" if stage in ("fusion", "select") and cfg.fusion_model != "lnln" else stage
        timings[key] = round(time.time() - t0, 1)
        print(f"   {stage} took {timings[key]:.0f} s")
    log = run / "timings.json"
    old = json.loads(log.read_text()) if log.exists() else {}
    old.update(timings)
    log.write_text(json.dumps(old, indent=2))
    print("timings (s):", json.dumps(timings))


if __name__ == "__main__":
    main()
