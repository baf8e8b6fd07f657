"""Batched throughput of the fusion and the three unimodal encoders in torch, on any device,
with nothing but torch and numpy: the script to bring to a GPU machine that has neither
onnxruntime-gpu, ctranslate2, gradio nor ray (issue 11's lent GPU).

    python -m streaming.torch_throughput [--device cuda] [--batches 1,8,64,512,4096] [--half]
                                         [--seconds 1.0] [--out docs/gpu-throughput]

Each model is built from the config stored in its shipped safetensors file (the header is
read as JSON: the safetensors package is not needed) with random weights: throughput does
not depend on the weights' values, so nothing is loaded but the shapes. Inputs are one live
window's: a 24-token transcript, 3 s of audio features (150 frames) and 15 face frames for
the fusion; 44 x 44 face crops; 150 audio frames; 24 text tokens. For each model and batch
size: items per second (the median of repeated timed calls, synchronised on CUDA) and
milliseconds per call. ``--half`` runs float16 (CUDA only). Prints a table; ``--out``
writes ``OUT.md`` and ``OUT.json`` naming the machine and the device.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "assets" / "weights"
TEXT_TOKENS, AUDIO_FRAMES, FACE_FRAMES = 24, 150, 15


def shipped_config(name: str) -> dict:
    """The ``config`` a shipped model was saved with: from the header of
    ``assets/weights/NAME.safetensors`` (8 bytes of length, then JSON), or, for a model that
    ships as ONNX only (the face encoder), from ``assets/onnx/NAME.onnx``'s metadata
    (``models.checkpoint.embed``), read without the onnx package."""
    path = WEIGHTS / f"{name}.safetensors"
    if not path.is_file():
        return _onnx_checkpoint(WEIGHTS.parent / "onnx" / f"{name}.onnx")["meta"]["config"]
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["config"])


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _onnx_checkpoint(path: Path) -> dict:
    """The ``checkpoint`` entry of an ONNX file's metadata_props (ModelProto field 14, each a
    StringStringEntryProto of key 1 and value 2), walking the top-level protobuf fields."""
    buf = path.read_bytes()
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _varint(buf, i)
            continue
        if wire != 2:
            raise ValueError(f"{path}: unexpected protobuf wire type {wire}")
        n, i = _varint(buf, i)
        body, i = buf[i : i + n], i + n
        if field == 14:
            entry, j = {}, 0
            while j < len(body):
                t, j = _varint(body, j)
                m, j = _varint(body, j)
                entry[t >> 3], j = body[j : j + m].decode(), j + m
            if entry.get(1) == "checkpoint":
                return json.loads(entry[2])
    raise ValueError(f"{path} holds no checkpoint metadata")


def models_and_inputs(batch: int, device: str, dtype: torch.dtype) -> dict:
    """name -> (model, inputs) for one batch size, random weights, on ``device``."""
    from models.encoders.audio import AudioEncoder, AudioEncoderConfig
    from models.encoders.face import FaceEncoder, FaceEncoderConfig
    from models.encoders.text import TextEncoder, TextEncoderConfig
    from models.fusion.lnln import EVIDENCE_DIMS, LNLN, LNLNConfig

    torch.manual_seed(0)
    fusion_cfg = LNLNConfig(**shipped_config("fusion"))
    audio_cfg = AudioEncoderConfig(**shipped_config("audio_encoder"))
    text_cfg = TextEncoderConfig(**shipped_config("text_encoder"))
    face_cfg = FaceEncoderConfig(**shipped_config("face_encoder"))
    b = batch

    def on(x):
        x = x.to(device)
        return x.to(dtype) if x.is_floating_point() else x

    def ones(*shape):
        return torch.ones(*shape, dtype=torch.bool, device=device)

    audio_states = AUDIO_FRAMES // 2  # the audio encoder's states: 25 a second
    fusion_in = (
        on(torch.randn(b, TEXT_TOKENS, fusion_cfg.text_dim)),
        ones(b, TEXT_TOKENS),
        on(torch.randn(b, audio_states, fusion_cfg.audio_dim)),
        ones(b, audio_states),
        on(torch.randn(b, FACE_FRAMES, fusion_cfg.vision_dim)),
        ones(b, FACE_FRAMES),
        on(torch.randn(b, sum(EVIDENCE_DIMS.values()))),
        ones(b, 3),
    )
    built = {
        "fusion (LNLN)": (LNLN(fusion_cfg), fusion_in),
        "face encoder": (FaceEncoder(face_cfg), (on(torch.randn(b, 1, 44, 44)),)),
        "audio encoder": (AudioEncoder(audio_cfg), (on(torch.randn(b, AUDIO_FRAMES, audio_cfg.in_dim)), ones(b, AUDIO_FRAMES))),
        "text encoder": (TextEncoder(text_cfg), (on(torch.randn(b, TEXT_TOKENS, text_cfg.in_dim)), ones(b, TEXT_TOKENS))),
    }
    return {k: (m.to(device=device, dtype=dtype).eval(), x) for k, (m, x) in built.items()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(batches: list[int], device: str, half: bool = False, seconds: float = 1.0) -> list[dict]:
    """One row per model and batch size: items/s and ms per call (median of timed calls)."""
    dtype = torch.float16 if half else torch.float32
    rows = []
    for b in batches:
        for name, (model, inputs) in models_and_inputs(b, device, dtype).items():
            with torch.inference_mode():
                for _ in range(3):  # warm up (CUDA kernels, allocator)
                    model(*inputs)
                _sync(device)
                times, spent = [], 0.0
                while spent < seconds or len(times) < 3:
                    t0 = time.perf_counter()
                    out = model(*inputs)
                    _sync(device)
                    times.append(time.perf_counter() - t0)
                    spent += times[-1]
                first = next(iter(out.values())) if isinstance(out, dict) else out
                if not torch.isfinite(first.float()).all():
                    raise RuntimeError(f"{name} gave non-finite outputs at batch {b}")
            t = float(np.median(times))
            rows.append({"model": name, "batch": b, "ms_per_call": round(1000 * t, 3), "items_per_s": round(b / t)})
    return rows


def table(rows: list[dict]) -> list[str]:
    names = list(dict.fromkeys(r["model"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    by = {(r["model"], r["batch"]): r for r in rows}
    lines = ["| batch | " + " | ".join(f"{n} items/s (ms)" for n in names) + " |", "| --- |" + " --- |" * len(names)]
    for b in batches:
        cells = [f"{by[n, b]['items_per_s']} ({by[n, b]['ms_per_call']})" for n in names]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> list[dict]:
    import platform
    from datetime import date

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,8,64,512,4096")
    ap.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per model and batch")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--out", help="writes OUT.md and OUT.json")
    a = ap.parse_args(argv)
    if a.half and not a.device.startswith("cuda"):
        ap.error("--half needs a CUDA device")
    if a.threads:
        torch.set_num_threads(a.threads)
    where = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    rows = measure([int(x) for x in a.batches.split(",")], a.device, a.half, a.seconds)
    head = (
        f"torch {torch.__version__} on {where} ({platform.machine()}, {platform.processor() or 'cpu'}), "
        f"{'float16' if a.half else 'float32'}, {date.today()}, random weights of the shipped shapes"
    )
    print(head)
    print("\n".join(table(rows)))
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"measured_on": head, "rows": rows}, indent=1))
        doc = ["# Batched throughput in torch", "", f"Written by `python -m streaming.torch_throughput`: {head}.", ""]
        out.with_suffix(".md").write_text("\n".join(doc + table(rows)) + "\n")
    return rows


if __name__ == "__main__":
    main()
