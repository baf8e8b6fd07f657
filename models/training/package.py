"""The package stage: a run folder's models into the assets folder the runtime loads.

In: <run>/{text,audio,face}_encoder.safetensors, fusion.safetensors (LNLN, required) and
each other fusion model's <stem>.safetensors that was trained (``models.fusion.FUSIONS``),
domain.safetensors, calibration.json and selection*.json (when the select stage ran); out:
assets/weights/*.safetensors (fp16, the domain statistics float32) and
assets/runtime.json (calibration, prior, LNLN's fusion temperature, conflict gain and
single-modality fallback at the top level as before, every packaged fusion's under
``fusions``, and the run's ``TrainConfig``). Then run
``python -m models.training.export`` and ``python -m models.training.evaluate``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from models import checkpoint
from models.fusion import FUSIONS
from models.training.config import TrainConfig
from models.training.fusion import selection_file


def package(cfg: TrainConfig, cache: Path, run: Path, data_root, assets: Path) -> None:
    """fp16 safetensors of the four models and runtime.json (calibration, prior) into assets/."""
    weights = assets / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    from models.runtime import SHIPPED

    for name, classes in SHIPPED.items():
        model, meta = checkpoint.load(run / f"{name}.safetensors", *classes)
        meta.pop("config", None)
        checkpoint.save(weights / f"{name}.safetensors", model, model.cfg, half=True, **meta)
    shutil.copyfile(run / "domain.safetensors", weights / "domain.safetensors")  # float32: precision matrices
    calib = json.loads((run / "calibration.json").read_text())
    calib["fusions"] = {}
    for spec in FUSIONS.values():
        path = run / f"{spec.stem}.safetensors"
        if spec.name != "lnln":  # LNLN is among SHIPPED above
            if not path.is_file():
                continue
            model, meta = checkpoint.load(path, spec.model, spec.config)
            meta.pop("config", None)
            checkpoint.save(weights / path.name, model, model.cfg, half=True, **meta)
        _, fmeta = checkpoint.read(path)
        sel = run / selection_file(spec.name)
        calib["fusions"][spec.name] = {
            "fusion_temperature": fmeta["temperature"],
            "conflict_gain": fmeta.get("conflict_gain", 0.0),
            "single_modality_fallback": json.loads(sel.read_text())["single_modality_fallback"] if sel.exists() else [],
        }
    calib.update(calib["fusions"]["lnln"])  # the default, at the top level as runtime.json always had it
    calib["train_config"] = asdict(cfg)
    (assets / "runtime.json").write_text(json.dumps(calib, indent=2))
    print(f"  wrote {weights} and {assets / 'runtime.json'}")
