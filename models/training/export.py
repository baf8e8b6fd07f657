"""Export the models the runtime runs to ONNX: ``python -m models.training.export``.

- ``fusion.onnx``, ``fusion_dashfusion.onnx``, ``fusion_hme.onnx``: the fusion models
  (``models.fusion.FUSIONS``; each one whose weights are in assets/weights);
- ``stack.onnx``: the unimodal stack (``models.unimodal.StackGraph``: the text and audio
  encoders, each modality's own estimate, the in-domain scores, with the calibration of
  runtime.json and the in-domain stats baked in; it carries a fingerprint of them, and the
  runtime runs it only when its torch stack has the same);
- ``face_encoder.onnx``: the face encoder, run on each frame as it arrives. It is also the
  face encoder's only shipped weights file: its initializers keep the parameter names and
  its metadata the config and training notes (``models.checkpoint.embed``), so torch reads
  it back exactly, and once it is checked the command removes
  ``assets/weights/face_encoder.safetensors`` (when writing into the assets' own onnx/);
- ``audio_encoder.onnx`` (``--models audio``, not shipped: the stack holds it).

Sequence lengths and the batch are dynamic. Weights whose values float16 holds exactly (all
of the shipped float16 safetensors) are stored as float16 and cast to float32 in the graph
(``halve_storage``): half the file, the same numbers. After writing each file the command
runs it in onnxruntime on random windows of several lengths, with missing steps and missing
modalities (all three absent included), and fails unless every output equals torch's
within ``--atol`` (default 1e-4).

In: assets/weights/*.safetensors, assets/runtime.json; out: assets/onnx/*.onnx (``--out``),
which ``models.runtime`` runs when present.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import INPUT, FaceEncoder, FaceEncoderConfig
from models.fusion import FUSIONS
from models.fusion.base import EVIDENCE_DIM, EVIDENCE_DIMS, FusionInference
from models.fusion.lnln import LNLNConfig
from models.paths import assets_dir
from models.types import AUDIO_DIM, TEXT_DIM, VISION_DIM, FusionInputs
from models.unimodal import STACK_INPUTS, STACK_OUTPUTS, StackGraph, UnimodalStack, stack_fingerprint


def random_fusion_inputs(
    b: int, lt: int, la: int, lv: int, rng: np.random.Generator, cfg: LNLNConfig | None = None
) -> dict[str, np.ndarray]:
    """Random fusion inputs with random missing steps and modalities, by ``FusionInputs`` name."""
    cfg = cfg or LNLNConfig()
    present = rng.random((b, 3)) < 0.7
    return FusionInputs(
        text=rng.normal(size=(b, lt, cfg.text_dim)).astype(np.float32),
        text_valid=rng.random((b, lt)) < 0.8,
        audio=rng.normal(size=(b, la, cfg.audio_dim)).astype(np.float32),
        audio_valid=rng.random((b, la)) < 0.8,
        vision=rng.normal(size=(b, lv, cfg.vision_dim)).astype(np.float32),
        vision_valid=rng.random((b, lv)) < 0.8,
        evidence=rng.random((b, EVIDENCE_DIM)).astype(np.float32)
        * present.repeat([EVIDENCE_DIMS[k] for k in ("text", "audio", "vision")], axis=1),
        present=present,
    )._asdict()


def export_fusion(model: torch.nn.Module, path: Path) -> None:
    """Any of the fusion models (``models.fusion.FUSIONS``) to ONNX, batch and lengths dynamic."""
    wrapped = FusionInference(model).eval()
    ex = random_fusion_inputs(2, 12, 40, 9, np.random.default_rng(0), model.cfg)
    args = tuple(torch.from_numpy(ex[k]) for k in FusionInputs._fields)
    b = torch.export.Dim("batch", min=1, max=1024)
    lt = torch.export.Dim("text_len", min=1, max=512)
    la = torch.export.Dim("audio_len", min=1, max=1500)
    lv = torch.export.Dim("vision_len", min=1, max=1024)
    shapes = FusionInputs(
        text={0: b, 1: lt},
        text_valid={0: b, 1: lt},
        audio={0: b, 1: la},
        audio_valid={0: b, 1: la},
        vision={0: b, 1: lv},
        vision_valid={0: b, 1: lv},
        evidence={0: b},
        present={0: b},
    )
    _export(wrapped, args, path, list(FusionInputs._fields), ["score", "logits", "completeness", "spread"], tuple(shapes))


class AudioOutputs(torch.nn.Module):
    """The audio encoder with tuple outputs (states, states_valid, logits)."""

    def __init__(self, m: AudioEncoder):
        super().__init__()
        self.m = m

    def forward(self, x, valid):
        o = self.m(x, valid)
        return o["states"], o["valid"], o["logits"]


class FaceOutputs(torch.nn.Module):
    """The face encoder with tuple outputs (emb, logits)."""

    def __init__(self, m: FaceEncoder):
        super().__init__()
        self.m = m

    def forward(self, x):
        o = self.m(x)
        return o["emb"], o["logits"]


def export_audio(model: AudioEncoder, path: Path) -> None:
    x = torch.randn(2, 150, model.cfg.in_dim)
    v = torch.ones(2, 150, dtype=torch.bool)
    b = torch.export.Dim("batch", min=1, max=1024)
    n = torch.export.Dim("frames", min=4, max=1500)
    _export(
        AudioOutputs(model).eval(),
        (x, v),
        path,
        ["x", "valid"],
        ["states", "states_valid", "logits"],
        ({0: b, 1: n}, {0: b, 1: n}),
    )


#: the face graph's initializer names: this prefix + the encoder's parameter names
FACE_PREFIX = "m."


def export_face(model: FaceEncoder, path: Path) -> None:
    x = torch.randn(2, 1, INPUT, INPUT)
    b = torch.export.Dim("batch", min=1, max=4096)
    # not optimised: the exporter would fold the batch norms into the convolutions, weights
    # float16 cannot hold exactly (halve_storage would leave them float32); onnxruntime makes
    # the same fusions when it loads the graph
    _export(FaceOutputs(model).eval(), (x,), path, ["x"], ["emb", "logits"], ({0: b},), optimize=False)


def random_stack_batch(b: int, lt: int, la: int, lv: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random ``StackGraph`` inputs (``STACK_INPUTS``), with missing steps and modalities."""
    present = rng.random((b, 3)) < 0.7
    return {
        "text": rng.normal(scale=0.1, size=(b, lt, TEXT_DIM)).astype(np.float32),
        "text_valid": rng.random((b, lt)) < 0.9,
        "audio": rng.normal(size=(b, la, AUDIO_DIM)).astype(np.float32),
        "audio_valid": rng.random((b, la)) < 0.9,
        "vision": rng.normal(size=(b, lv, VISION_DIM)).astype(np.float32),
        "vision_valid": rng.random((b, lv)) < 0.9,
        "present": present,
        "reliability": rng.random((b, 3)).astype(np.float32),
    }


def export_stack(stack: UnimodalStack, path: Path) -> None:
    """The unimodal stack (text and audio encoders, the estimates, the in-domain scores)
    as one graph; the face encoder runs per frame, on arrival (``face_encoder.onnx``)."""
    graph = StackGraph(stack).eval()
    ex = random_stack_batch(2, 12, 150, 9, np.random.default_rng(0))
    args = tuple(torch.from_numpy(ex[k]) for k in STACK_INPUTS)
    # sizes inferred (Dim.AUTO): the batch, text and vision lengths from 1, audio from
    # STACK_MIN_AUDIO frames (StackGraph.feeds pads a batch without audio to it); the checks
    # below run batch 1 and length 1
    auto = torch.export.Dim.AUTO
    shapes = tuple({0: auto, 1: auto} if k.split("_")[0] in ("text", "audio", "vision") else {0: auto} for k in STACK_INPUTS)
    _export(graph, args, path, list(STACK_INPUTS), list(STACK_OUTPUTS), shapes)
    _stamp(path, {"stack_fingerprint": stack_fingerprint(stack)})


def _stamp(path: Path, meta: dict[str, str]) -> None:
    import onnx

    m = onnx.load(str(path))
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))


def halve_storage(path: Path, min_size: int = 1024) -> tuple[int, int]:
    """Stores each float32 initializer of ``path`` whose values float16 holds exactly (the
    shipped weights are float16 safetensors) as float16, cast back to float32 inside the
    graph: the file halves, and onnxruntime folds the casts when the session is made, so what
    runs and what comes out are unchanged. Also drops the exporter's per-node metadata (the
    torch stack trace and module path of every node: a third of a small model's file),
    never the model's own metadata (``stack_fingerprint``). Returns (bytes before, bytes after)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    before = path.stat().st_size
    m = onnx.load(str(path))
    g = m.graph
    casts = []
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.size < min_size or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        name = init.name
        g.initializer.remove(init)
        g.initializer.append(numpy_helper.from_array(a.astype(np.float16), name + "__f16"))
        casts.append(helper.make_node("Cast", [name + "__f16"], [name], to=TensorProto.FLOAT, name=name + "__cast"))
    nodes = casts + list(g.node)
    for n in nodes:
        del n.metadata_props[:]
        n.doc_string = ""
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, str(path))
    return before, path.stat().st_size


def _halved(path: Path) -> None:
    before, after = halve_storage(path)
    print(f"{path.name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (float16 storage where exact)")


def _export(module, args, path: Path, inputs, outputs, shapes, optimize: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            optimize=optimize,
            verbose=False,
        )
    prog.save(str(path))


def max_difference(module, path: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    """Largest |onnxruntime - torch| over all outputs of all feeds."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    with torch.no_grad():
        for feed in feeds:
            ref = module(*(torch.from_numpy(feed[n]) for n in names))
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            got = sess.run(None, {n: feed[n] for n in names})
            for r, g in zip(ref, got):
                r = r.numpy()
                if r.dtype == bool:
                    worst = max(worst, float(np.any(r != g)))
                else:
                    worst = max(worst, float(np.abs(r - g).max()))
    return worst


def _checked(name: str, module, path: Path, feeds, atol: float) -> list[str]:
    """[name] when onnxruntime differs from torch beyond ``atol`` on ``feeds``, else []."""
    diff = max_difference(module, path, feeds)
    print(f"{path.name}: max |onnxruntime - torch| = {diff:.2e}")
    return [name] if diff > atol else []


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", help="assets folder (default assets/)")
    ap.add_argument("--out", help="output folder (default <assets>/onnx)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--models", default="fusion,stack,face", help="which to export (comma separated: fusion, stack, face, audio)")
    args = ap.parse_args(argv)
    which = {m.strip() for m in args.models.split(",") if m.strip()}
    if not which or which - {"fusion", "stack", "face", "audio"}:
        ap.error("--models takes a comma-separated subset of fusion,stack,face,audio")
    a = assets_dir(args.assets)
    out = Path(args.out) if args.out else a / "onnx"
    w = a / "weights"
    rng = np.random.default_rng(1)
    failures = []

    if "fusion" in which:
        feeds = [
            random_fusion_inputs(b, lt, la, lv, rng)
            for b, lt, la, lv in ((1, 1, 1, 1), (1, 20, 75, 15), (3, 33, 150, 30), (2, 5, 8, 3))
        ]
        none = random_fusion_inputs(2, 7, 10, 4, rng)
        none["present"][:] = False
        none["evidence"][:] = 0
        feeds.append(none)
        for spec in FUSIONS.values():
            if not (w / f"{spec.stem}.safetensors").is_file():
                print(f"{spec.stem}.safetensors: not in {w}, {spec.name} not exported")
                continue
            fusion, _ = checkpoint.load(w / f"{spec.stem}.safetensors", spec.model, spec.config)
            path = out / f"{spec.stem}.onnx"
            export_fusion(fusion, path)
            _halved(path)
            failures += _checked(spec.name, FusionInference(fusion).eval(), path, feeds, args.atol)

    if "stack" in which:
        from models.runtime import SentimentModel

        stack = SentimentModel.load(args.assets, use_onnx=False).stack
        export_stack(stack, out / "stack.onnx")
        _halved(out / "stack.onnx")
        sfeeds = [
            random_stack_batch(b, lt, la, lv, rng)
            for b, lt, la, lv in ((1, 1, 3, 1), (1, 20, 150, 15), (3, 33, 150, 30), (2, 5, 9, 3), (1, 64, 151, 15))
        ]
        none = random_stack_batch(2, 7, 10, 4, rng)
        none["present"][:] = False
        sfeeds.append(none)
        failures += _checked("stack", StackGraph(stack).eval(), out / "stack.onnx", sfeeds, args.atol)

    if "audio" in which:
        audio, _ = checkpoint.load(w / "audio_encoder.safetensors", AudioEncoder, AudioEncoderConfig)
        export_audio(audio, out / "audio_encoder.onnx")
        _halved(out / "audio_encoder.onnx")
        afeeds = [
            {"x": rng.normal(size=(b, n, audio.cfg.in_dim)).astype(np.float32), "valid": rng.random((b, n)) < 0.9}
            for b, n in ((1, 150), (2, 77), (1, 9))
        ]
        failures += _checked("audio", AudioOutputs(audio).eval(), out / "audio_encoder.onnx", afeeds, args.atol)

    if "face" in which:
        source = checkpoint.weights_path(a, "face_encoder")
        face, meta = checkpoint.load(source, FaceEncoder, FaceEncoderConfig)
        export_face(face, out / "face_encoder.onnx")
        _halved(out / "face_encoder.onnx")
        checkpoint.embed(out / "face_encoder.onnx", face, FACE_PREFIX, meta)
        ffeeds = [{"x": rng.normal(size=(b, 1, INPUT, INPUT)).astype(np.float32)} for b in (1, 5)]
        bad = _checked("face", FaceOutputs(face).eval(), out / "face_encoder.onnx", ffeeds, args.atol)
        failures += bad
        if not bad and source.suffix == ".safetensors" and out.resolve() == (a / "onnx").resolve():
            source.unlink()
            print(f"removed {source}: face_encoder.onnx holds the same weights (one format shipped)")
    if failures:
        raise SystemExit(f"onnxruntime differs from torch beyond {args.atol}: {failures}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
