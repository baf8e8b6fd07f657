"""Saving and loading weights as safetensors, with the model's config in the metadata.

Only tensors and a JSON config are read back: no pickles, so a weights file cannot run
code when it is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def save(path: str | Path, module: torch.nn.Module, config=None, half: bool = False, **meta) -> None:
    """Writes module.state_dict() (float tensors as fp16 when ``half``) and config/meta as JSON."""
    sd = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        sd[k] = v
    metadata = {k: json.dumps(v) for k, v in meta.items()}
    if config is not None:
        metadata["config"] = json.dumps(dataclasses.asdict(config))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=metadata)


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict in float32, metadata with JSON values decoded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        sd = {k: f.get_tensor(k) for k in f.keys()}
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    return sd, meta


def load(path: str | Path, model_cls, config_cls):
    """Builds ``model_cls(config_cls(**metadata['config']))`` and loads the weights strictly."""
    sd, meta = read(path)
    cfg = config_cls(**meta["config"]) if "config" in meta else config_cls()
    model = model_cls(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval(), meta
