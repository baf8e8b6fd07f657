"""Saving and loading weights as safetensors, with the model's config in the metadata; and
reading them back from an ONNX graph that holds them (``embed``), so a model can ship in one
format.

Only tensors and a JSON config are read back: no pickles, so a weights file cannot run
code when it is loaded (an ONNX file is a protobuf of tensors and graph, read the same way).
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


#: the ONNX metadata key under which ``embed`` stores a checkpoint's metadata
ONNX_KEY = "checkpoint"


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict in float32, metadata with JSON values decoded), from a safetensors file or
    from an ONNX graph that ``embed`` gave its checkpoint metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if path.suffix == ".onnx":
        return _read_onnx(path)
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


def weights_path(assets: str | Path, name: str) -> Path:
    """Where a shipped model's weights are: ``assets/weights/NAME.safetensors``, or, for a
    model that ships as ONNX only, ``assets/onnx/NAME.onnx`` (``embed``)."""
    a = Path(assets)
    st = a / "weights" / f"{name}.safetensors"
    onnx_path = a / "onnx" / f"{name}.onnx"
    return st if st.is_file() or not onnx_path.is_file() else onnx_path


def embed(onnx_path: str | Path, module: torch.nn.Module, prefix: str, meta: dict) -> None:
    """Makes ``onnx_path`` (an export of ``module`` whose initializers keep the parameter
    names, ``prefix`` + name, optionally stored as float16 with a ``__f16`` suffix) readable
    by ``read``: the metadata (config included) and the integer buffers the graph does not
    hold (batch-norm counters) are stored as JSON in the graph's metadata. Raises ValueError
    unless every float tensor of the state dict reads back exactly."""
    import onnx

    path = Path(onnx_path)
    m = onnx.load(str(path))
    sd = module.state_dict()
    counters = {k: v.tolist() for k, v in sd.items() if not v.is_floating_point()}
    entry = {"prefix": prefix, "meta": meta, "counters": counters}
    kept = [p for p in m.metadata_props if p.key != ONNX_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    m.metadata_props.add(key=ONNX_KEY, value=json.dumps(entry))
    onnx.save(m, str(path))
    back, _ = read(path)
    wrong = sorted(k for k, v in sd.items() if k not in back or not torch.equal(back[k], v.detach().float().cpu()))
    if wrong or set(back) != set(sd):
        raise ValueError(f"{path.name} does not hold the weights exactly: {wrong[:5] or sorted(set(back) - set(sd))[:5]}")


def _read_onnx(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    if ONNX_KEY not in props:
        raise ValueError(f"{path} holds no checkpoint (export it with python -m models.training.export)")
    entry = json.loads(props[ONNX_KEY])
    prefix = entry["prefix"]
    sd = {}
    for init in m.graph.initializer:
        name = init.name.removesuffix("__f16")
        if name.startswith(prefix):
            sd[name[len(prefix) :]] = torch.from_numpy(numpy_helper.to_array(init).astype("float32"))
    for k, v in entry["counters"].items():
        sd[k] = torch.tensor(v)
    return sd, entry["meta"]
