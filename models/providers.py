"""Where a model runs: onnxruntime execution providers and faster-whisper devices, chosen
once and never silently.

``onnx_providers(device, available)`` turns a requested device ("cpu", "cuda", "auto") and
onnxruntime's ``get_available_providers()`` into the provider list to give an
``InferenceSession``: "cuda" puts TensorRT (when present) and CUDA first and raises
``DeviceUnavailable`` when onnxruntime has neither (the CPU wheel, or the GPU wheel without
its CUDA libraries); "auto" takes them when present and the CPU otherwise. The caller
checks ``session.get_providers()`` afterwards: onnxruntime itself falls back to the CPU when
a provider fails to load, and ``SentimentModel`` raises then. ``whisper_device(device)``
gives faster-whisper's (device, compute_type): CUDA float16 on GPU hosts, CPU int8.
"""

from __future__ import annotations

DEVICES = ("cpu", "cuda", "auto")
CPU = "CPUExecutionProvider"
GPU_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class DeviceUnavailable(RuntimeError):
    """A GPU was asked for and the installed runtime cannot reach one."""


def _check(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    return device


def onnx_providers(device: str, available: list[str]) -> list[str]:
    """The execution providers, best first, for ``device`` given onnxruntime's available ones."""
    _check(device)
    gpu = [p for p in GPU_ORDER if p in available]
    if device == "cuda" and not gpu:
        raise DeviceUnavailable(
            f"a GPU was requested but onnxruntime offers only {', '.join(available) or 'nothing'}: "
            "install requirements-gpu.txt (README, GPU hosts), which leaves onnxruntime-gpu alone"
        )
    return ([] if device == "cpu" else gpu) + [CPU]


def whisper_device(device: str, cuda_devices: int | None = None) -> tuple[str, str]:
    """(device, compute_type) for faster-whisper. ``cuda_devices``: ctranslate2's
    ``get_cuda_device_count()`` (looked up when None)."""
    _check(device)
    if device == "cpu":
        return "cpu", "int8"
    if cuda_devices is None:
        import ctranslate2

        cuda_devices = ctranslate2.get_cuda_device_count()
    if cuda_devices > 0:
        return "cuda", "float16"
    if device == "cuda":
        raise DeviceUnavailable("a GPU was requested but ctranslate2 sees no CUDA device (its CUDA 12 libraries missing?)")
    return "cpu", "int8"


__all__ = ["DEVICES", "DeviceUnavailable", "onnx_providers", "whisper_device"]


def report() -> dict:
    """What this host offers: the onnxruntime distributions installed (a GPU host must end
    with exactly one, onnxruntime-gpu), their providers, and ctranslate2's CUDA devices."""
    from importlib import metadata

    dists = sorted(
        {d.metadata["Name"].lower() for d in metadata.distributions() if d.metadata["Name"].lower().startswith("onnxruntime")}
    )
    out: dict = {"onnxruntime_distributions": dists}
    try:
        import onnxruntime as ort

        out["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as e:
        out["onnxruntime_providers"] = f"import failed: {e}"
    try:
        import ctranslate2

        out["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception as e:
        out["ctranslate2_cuda_devices"] = f"import failed: {e}"
    return out


def gpu_problems(r: dict) -> list[str]:
    """Why a host described by ``report()`` is not a working GPU host (empty: it is)."""
    bad = []
    if r["onnxruntime_distributions"] != ["onnxruntime-gpu"]:
        bad.append(f"onnxruntime distributions {r['onnxruntime_distributions']}: want exactly ['onnxruntime-gpu']")
    prov = r["onnxruntime_providers"]
    if not isinstance(prov, list) or "CUDAExecutionProvider" not in prov:
        bad.append(f"onnxruntime has no CUDAExecutionProvider: {prov}")
    if not isinstance(r["ctranslate2_cuda_devices"], int) or r["ctranslate2_cuda_devices"] < 1:
        bad.append(f"ctranslate2 sees no CUDA device: {r['ctranslate2_cuda_devices']}")
    return bad


def main(argv=None) -> int:
    """``python -m models.providers [--expect-gpu]``: prints ``report()``; with
    ``--expect-gpu`` exits 1 naming each problem when this is not a working GPU host."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="what this host offers the models")
    ap.add_argument("--expect-gpu", action="store_true", help="fail unless onnxruntime-gpu alone and CUDA are there")
    args = ap.parse_args(argv)
    r = report()
    print(json.dumps(r, indent=2))
    if args.expect_gpu:
        bad = gpu_problems(r)
        for b in bad:
            print("not a GPU host:", b)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
