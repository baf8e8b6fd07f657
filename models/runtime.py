"""The runtime: one entry object, ``SentimentModel``, that loads the shipped weights and turns
a window's features into a ``SentimentResult``.

    model = SentimentModel.load()                  # assets/ by default
    text = model.text_features("i really love it")  # SequenceFeatures [L, TEXT_DIM]
    audio = model.audio_features(samples_16k)        # SequenceFeatures [F, AUDIO_DIM]
    vision = model.face_features(crops)              # SequenceFeatures [T, VISION_DIM] (uint8 [T, 48, 48] in)
    result = model.predict(WindowFeatures(text, audio, vision))

Modalities that are None, or whose steps are all invalid, are masked out. With none left
the result is the training prior (its mean score, and the class shares as probabilities,
which rank the mean score's class first), never NaN. Every result's label is the class
of its score and its probabilities rank that class first (``models.ordinal``). A modality listed in runtime.json's ``single_modality_fallback`` answers
alone when it is the only one present (see ``SentimentModel.fuse``). The fusion model runs
in onnxruntime when ``assets/onnx/fusion.onnx``
exists (what ``models.training.export`` writes), else in torch; so do the face encoder
(``face_encoder.onnx``) and the unimodal stack, the text and audio encoders with the
estimates and in-domain scores (``stack.onnx``, run only when the fingerprint it carries is
the loaded torch stack's: weights, calibration and in-domain stats alike).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models import checkpoint, domain
from models.agreement import combine
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import FRAME_FLIP, FaceEncoder, FaceEncoderConfig, encode_faces, prepare
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.fusion import DEFAULT_FUSION, FUSIONS, fusion_spec
from models.fusion.lnln import LNLN, LNLNConfig
from models.paths import assets_dir
from models.providers import onnx_providers
from models.types import (
    MODALITIES,
    SENTIMENT_CLASSES,
    VISION_DIM,
    FusionInputs,
    Modality,
    ModalityEstimate,
    SentimentResult,
    SequenceFeatures,
    WindowFeatures,
    is_coherent,
)
from models.unimodal import EMOTION_NAMES, StackGraph, StackOutput, UnimodalStack, stack_batch, stack_fingerprint

#: The shipped models: file stem in assets/weights -> (model class, config class); the
#: other fusion models (``models.fusion.FUSIONS``) ship beside them when trained.
SHIPPED = {
    "text_encoder": (TextEncoder, TextEncoderConfig),
    "audio_encoder": (AudioEncoder, AudioEncoderConfig),
    "face_encoder": (FaceEncoder, FaceEncoderConfig),
    "fusion": (LNLN, LNLNConfig),
}

log = logging.getLogger(__name__)

#: distinct transcripts whose text features ``SentimentModel`` keeps
TEXT_CACHE = 256


def _load_fusion(assets: Path, spec) -> torch.nn.Module:
    """The fusion model ``spec`` (``models.fusion.FusionSpec``) from assets/weights."""
    path = assets / "weights" / f"{spec.stem}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the {spec.title} fusion is not shipped here (train it: python -m models.training.train "
            f"--stages fusion,select,package --set fusion_model={spec.name}, then python -m models.training.export)"
        )
    return checkpoint.load(path, spec.model, spec.config)[0]


def _onnx_session(path: Path | None, threads: int, device: str):
    """An onnxruntime session of ``path`` on ``device`` (None when there is no such file);
    raises when a requested GPU provider did not load (onnxruntime would fall back quietly)."""
    if path is None or not path.is_file():
        return None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    wanted = onnx_providers(device, ort.get_available_providers())
    session = ort.InferenceSession(str(path), opts, providers=wanted)
    got = session.get_providers()
    if device != "cpu" and got[0] != wanted[0]:
        raise RuntimeError(f"{path.name} asked for {wanted[0]} but onnxruntime gave {got}")
    log.info("%s runs on %s", path.name, ", ".join(got))
    return session


class SentimentModel:
    def __init__(
        self,
        stack: UnimodalStack,
        fusion: torch.nn.Module,
        runtime: dict,
        onnx_path: Path | None = None,
        threads: int = 1,
        device: str = "cpu",
        fusion_name: str = DEFAULT_FUSION,
    ):
        """``fusion``: any of ``models.fusion.FUSIONS`` (``fusion_name``); its calibration is
        runtime.json's ``fusions[fusion_name]``, else (LNLN, earlier files) the top level.
        ``onnx_path``: the fusion's ONNX file; stack.onnx and face_encoder.onnx are looked
        for beside it."""
        self.stack = stack.eval()
        self.fusion = fusion.eval()
        self.fusion_name = fusion_name
        self.cfg = runtime
        self.assets: Path | None = None  # where load() read from (``with_fusion`` reads there)
        self._use_onnx = onnx_path is not None
        self._variants: dict[str, SentimentModel] = {fusion_name: self}
        own = runtime.get("fusions", {}).get(fusion_name)
        if own is None and fusion_name != DEFAULT_FUSION:
            raise ValueError(f"runtime.json has no calibration for the {fusion_name} fusion (under 'fusions')")
        own = own or runtime
        self.fusion_temperature = float(own.get("fusion_temperature", 1.0))
        self.conflict_gain = float(own.get("conflict_gain", 0.0))
        self.prior_probs = np.asarray(runtime["prior_probs"], np.float64)
        self.prior_score = float(runtime["prior_score"])
        if not is_coherent(self.prior_score, self.prior_probs):
            raise ValueError(f"runtime.json: prior score {self.prior_score} and probabilities {self.prior_probs} disagree")
        # modalities whose own encoder beat the fusion on validation windows where it was the
        # only one present (``models.training.train``'s select stage); then it gives the result alone
        self.single_fallback = [MODALITIES.index(Modality(m)) for m in own.get("single_modality_fallback", [])]
        self.threads = threads
        self.device = device
        self._session = _onnx_session(onnx_path, threads, device)
        self.providers: list[str] = [] if self._session is None else self._session.get_providers()
        # the face encoder in onnxruntime beside the fusion (the same network, exported by
        # models.training.export; 8 ms against torch's 14 ms per crop on one thread)
        face = None if onnx_path is None else onnx_path.parent / "face_encoder.onnx"
        self._face_session = _onnx_session(face, threads, device)
        self._stack_session = None if onnx_path is None else self._stack_onnx(onnx_path.parent / "stack.onnx")
        self._text_extractor = None
        self._text_cache: OrderedDict[str, SequenceFeatures] = OrderedDict()
        self._text_lock = threading.Lock()
        self._audio_extractor = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        assets: str | Path | None = None,
        use_onnx: bool = True,
        threads: int = 1,
        device: str = "cpu",
        fusion: str = DEFAULT_FUSION,
    ) -> SentimentModel:
        """The shipped model. ``device``: where the ONNX fusion runs, "cpu", "cuda" (an error
        when onnxruntime has no CUDA provider) or "auto" (CUDA when present, else CPU, logged).
        ``fusion``: lnln (default), dashfusion or hme (``models.fusion.FUSIONS``); an error
        naming the file when that model was not shipped."""
        spec = fusion_spec(fusion)
        a = assets_dir(assets)
        runtime = json.loads((a / "runtime.json").read_text())
        if "unimodal_spread" not in runtime or not (a / "weights" / "domain.safetensors").is_file():
            raise ValueError(
                f"{a} was written before the in-domain scores and the spread output: retrain "
                "(python -m models.training.train) and run python -m models.training.export"
            )
        m = {name: checkpoint.load(checkpoint.weights_path(a, name), *c)[0] for name, c in SHIPPED.items() if name != "fusion"}
        stack = UnimodalStack(m["text_encoder"], m["audio_encoder"], m["face_encoder"])
        stack.temperature.copy_(torch.tensor(runtime["unimodal_temperature"]))
        stack.class_scores.copy_(torch.tensor(runtime["class_scores"]))
        stack.spread.copy_(torch.tensor(runtime["unimodal_spread"]))
        stack.load_domain(domain.load(a / "weights" / "domain.safetensors"))
        module = _load_fusion(a, spec)
        onnx = a / "onnx" / f"{spec.stem}.onnx" if use_onnx else None
        model = cls(stack, module, runtime, onnx, threads, device, fusion_name=spec.name)
        model.assets = a
        return model

    def with_fusion(self, name: str) -> SentimentModel:
        """This model with fusion ``name`` instead (``models.fusion.FUSIONS``), sharing the
        stack, its onnxruntime sessions, the extractors and the text cache; made once per name
        and kept. Only for a model made by ``load``."""
        if name in self._variants:
            return self._variants[name]
        if self.assets is None:
            raise ValueError("with_fusion needs a model made by SentimentModel.load")
        spec = fusion_spec(name)
        other = copy.copy(self)
        other.fusion = _load_fusion(self.assets, spec).eval()
        other.fusion_name = spec.name
        own = self.cfg.get("fusions", {}).get(spec.name)
        if own is None:
            raise ValueError(f"{self.assets / 'runtime.json'} has no calibration for the {spec.name} fusion")
        other.fusion_temperature = float(own.get("fusion_temperature", 1.0))
        other.conflict_gain = float(own.get("conflict_gain", 0.0))
        other.single_fallback = [MODALITIES.index(Modality(m)) for m in own.get("single_modality_fallback", [])]
        path = self.assets / "onnx" / f"{spec.stem}.onnx" if self._use_onnx else None
        other._session = _onnx_session(path, self.threads, self.device)
        other.providers = [] if other._session is None else other._session.get_providers()
        other._lock = threading.Lock()
        self._variants[spec.name] = other
        return other

    @property
    def fusions_available(self) -> list[str]:
        """The fusion models whose weights and calibration ship beside this model's."""
        if self.assets is None:
            return [self.fusion_name]
        listed = self.cfg.get("fusions", {})
        return [
            n
            for n, spec in FUSIONS.items()
            if (n == DEFAULT_FUSION or n in listed) and (self.assets / "weights" / f"{spec.stem}.safetensors").is_file()
        ]

    def _stack_onnx(self, path: Path):
        """The onnxruntime session of ``stack.onnx`` when it was exported from this very stack
        (else None, logged: the torch stack runs)."""
        session = _onnx_session(path, self.threads, self.device)
        if session is None:
            return None
        meta = session.get_modelmeta().custom_metadata_map.get("stack_fingerprint")
        if meta != stack_fingerprint(self.stack):
            log.warning(
                "%s was exported from other weights or calibration: the stack runs in torch (rerun models.training.export)", path
            )
            return None
        return session

    def _run_stack(self, batch) -> StackOutput:
        """``UnimodalStack`` of a batch: in onnxruntime where ``stack.onnx`` is loaded and takes
        the batch (``StackGraph.feeds``), else in torch."""
        feeds = None if self._stack_session is None else StackGraph.feeds(batch)
        if feeds is None:
            return self.stack(batch)
        return StackOutput.from_flat(self._stack_session.run(None, feeds))

    @property
    def backend(self) -> str:
        return "onnxruntime" if self._session is not None else "torch"

    # ------------------------------------------------------------ features
    def _text(self):
        if self._text_extractor is None:
            from models.features.text import TextFeatureExtractor

            self._text_extractor = TextFeatureExtractor()
        return self._text_extractor

    def text_features(self, text: str) -> SequenceFeatures | None:
        """MiniLM token features of a transcript; None for empty text."""
        if not isinstance(text, str) or not text.strip():
            return None
        return self.text_features_many([text])[0]

    def text_features_many(self, texts: Sequence[str]) -> list[SequenceFeatures | None]:
        """``text_features`` of several transcripts in one MiniLM pass (the engine's batch).

        The last ``TEXT_CACHE`` distinct transcripts are remembered (read-only arrays): a live
        window's text is often its predecessor's (no new word decoded in between), and the
        same line comes from several windows; only new texts reach MiniLM."""
        out: list[SequenceFeatures | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._text_lock:
            for i, t in enumerate(texts):
                if isinstance(t, str) and t.strip():
                    hit = self._text_cache.get(t)
                    if hit is not None:
                        self._text_cache.move_to_end(t)
                        out[i] = hit
                    else:
                        todo.setdefault(t, []).append(i)
        if not todo:
            return out
        new = list(todo)
        for t, x in zip(new, self._text()(new)):
            f = SequenceFeatures(x, np.ones(len(x), bool))
            f.values.setflags(write=False)
            f.valid.setflags(write=False)
            for i in todo[t]:
                out[i] = f
            with self._text_lock:
                self._text_cache[t] = f
                while len(self._text_cache) > TEXT_CACHE:
                    self._text_cache.popitem(last=False)
        return out

    def text_read(self, text: str) -> int:
        """How many leading characters of ``text`` ``text_features`` reads (the rest is cut)."""
        return self._text().chars_read(text)

    @property
    def text_limit(self) -> int:
        """The most word pieces the text model reads."""
        return self._text().max_tokens

    def audio_features(self, audio: np.ndarray, frame_valid: np.ndarray | None = None, whisper=None) -> SequenceFeatures:
        """Audio features of float32 16 kHz mono samples; ``frame_valid`` [F] marks frames that
        hold real audio (False: a gap, masked out)."""
        if self._audio_extractor is None:
            from models.features.audio import AudioFeatureExtractor

            self._audio_extractor = AudioFeatureExtractor(whisper=whisper, threads=self.threads)
        x = self._audio_extractor(audio)
        valid = np.ones(len(x), bool) if frame_valid is None else np.asarray(frame_valid, bool)[: len(x)]
        if len(valid) < len(x):
            valid = np.concatenate([valid, np.zeros(len(x) - len(valid), bool)])
        return SequenceFeatures(x, valid)

    def face_frames(self, crops: np.ndarray) -> np.ndarray:
        """[N, VISION_DIM] face embedding + expression logits of uint8 [N, 48, 48] aligned crops,
        computed as for the fusion's training windows (``encode_faces``, single views; in
        onnxruntime when ``face_encoder.onnx`` is there, equal to torch within 1e-5)."""
        if len(crops) == 0:
            return np.zeros((0, VISION_DIM), np.float32)
        if self._face_session is None:
            out = encode_faces(self.stack.face, np.asarray(crops))
            return np.concatenate([out["emb"], out["logits"]], 1).astype(np.float32)
        x = prepare(np.asarray(crops)).numpy()
        n = len(x)
        if FRAME_FLIP:  # the image and its mirror in one pass, averaged (as encode_faces)
            x = np.concatenate([x, x[..., ::-1]])
        emb, logits = self._face_session.run(None, {"x": np.ascontiguousarray(x)})
        if FRAME_FLIP:
            emb, logits = (emb[:n] + emb[n:]) / 2, (logits[:n] + logits[n:]) / 2
        return np.concatenate([emb, logits], 1).astype(np.float32)

    @staticmethod
    def face_sequence(frames: list[np.ndarray | None]) -> SequenceFeatures:
        """A window's vision input from its frames' ``face_frames`` rows, in order; None marks a
        frame without a usable face (masked out). The live pipeline encodes each frame once
        and assembles every window that holds it with this."""
        valid = np.array([f is not None for f in frames], bool)
        out = np.zeros((len(frames), VISION_DIM), np.float32)
        for i, f in enumerate(frames):
            if f is not None:
                out[i] = f
        return SequenceFeatures(out, valid)

    def face_features(self, crops: list[np.ndarray | None]) -> SequenceFeatures:
        """Per-frame vision features of a window; None marks a frame without a usable face."""
        found = [c for c in crops if c is not None]
        rows = iter(self.face_frames(np.stack(found)) if found else ())
        return self.face_sequence([None if c is None else next(rows) for c in crops])

    # ------------------------------------------------------------ inference
    def _fusion(self, inputs: FusionInputs) -> tuple[np.ndarray, np.ndarray]:
        """(score [B], spread [B]) of the fusion model."""
        if self._session is not None:
            feed = {k: v.numpy() for k, v in inputs._asdict().items()}
            score, _, _, spread = self._session.run(None, feed)
            return score, spread
        out = self.fusion(*inputs)
        return out["score"].numpy(), out["spread"].numpy()

    @torch.no_grad()
    def fuse(self, s: StackOutput) -> tuple[np.ndarray, np.ndarray]:
        """(scores [B] in [-3, 3], calibrated probabilities [B, 3]) of a batch of
        ``UnimodalStack`` outputs: the fusion model's score and spread, put against the
        modalities' own estimates (``models.agreement``: confidence lowered by their
        disagreement, score held within half a class of their range), except in rows where
        one modality alone is present and runtime.json lists it under
        ``single_modality_fallback`` (its encoder did better than the fusion on such
        validation windows): those rows get that encoder's own estimate. Every row's
        probabilities rank its score's class first (``models.ordinal``). Rows where no
        modality reaches the fusion (none observed, or only gated ones) get the fusion's
        answer on nothing, which ``predict`` replaces by the prior. Used by ``predict`` and
        by the evaluation."""
        score, spread = self._fusion(s.fusion)
        observed = s.observed.numpy().astype(bool)
        weight = s.in_domain.numpy()
        score, probs = combine(score, spread, s.scores(), observed, weight, self.fusion_temperature, self.conflict_gain)
        pres = s.present.numpy().astype(bool)
        for m in self.single_fallback:
            only = pres[:, m] & (pres.sum(1) == 1) & (observed.sum(1) == 1)
            if only.any():
                e = s.estimates[MODALITIES[m]]
                score[only] = e.score.numpy()[only]
                q = e.probs.numpy()[only].astype(np.float64)
                probs[only] = q / q.sum(1, keepdims=True)
        return score, probs

    def prior(self) -> SentimentResult:
        return SentimentResult(score=self.prior_score, probs=self.prior_probs.copy(), used=())

    @torch.no_grad()
    def predict(self, window: WindowFeatures) -> SentimentResult:
        """The fused sentiment of one window, with each present modality's own estimate."""
        return self.predict_many([window])[0]

    @torch.no_grad()
    def predict_many(self, windows: Sequence[WindowFeatures]) -> list[SentimentResult]:
        """``predict`` of several windows in batches (the inference engine gathers them from
        many sessions): each result equals that window's ``predict`` alone, within float
        rounding (``tests/test_engine.py``). Text and vision padding is masked exactly; the
        audio encoder's stride-2 convolution gives a window padded to an odd length one more
        state, so windows are batched with others of the same audio length only (live
        windows all have one length). Windows with no modality present get the prior without
        reaching the model."""
        windows = list(windows)
        results: list[SentimentResult | None] = [None if w.present() else self.prior() for w in windows]
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            if results[i] is None:
                n = len(w.audio.values) if Modality.AUDIO in w.present() else -1
                groups.setdefault(n, []).append(i)
        for rows in groups.values():
            used = [windows[i].present() for i in rows]
            batch = stack_batch(
                *([windows[i].get(m) if m in u else None for i, u in zip(rows, used)] for m in MODALITIES),
                reliability=[[windows[i].reliability_of(m) for m in MODALITIES] for i in rows],
            )
            with self._lock:
                s = self._run_stack(batch)
                score, probs = self.fuse(s)
            for b, (i, u) in enumerate(zip(rows, used)):
                results[i] = self._result(s, b, u, float(score[b]), probs[b])
        return results

    def _result(self, s: StackOutput, b: int, used: tuple, score: float, probs: np.ndarray) -> SentimentResult:
        """Row ``b`` of a batch as a ``SentimentResult``."""
        dom = s.in_domain[b].numpy()
        per = {}
        for i, m in enumerate(MODALITIES):
            if m not in used:
                continue
            e = s.estimates[m]
            p = e.probs[b].numpy().astype(np.float64)
            p = p / p.sum()
            detail = {} if e.emotions is None else {n: float(v) for n, v in zip(EMOTION_NAMES[m], e.emotions[b].numpy())}
            per[m] = ModalityEstimate(score=float(e.score[b]), probs=p, detail=detail, in_domain=float(dom[i]))
        fused = tuple(m for m, p in zip(MODALITIES, s.present[b].tolist()) if p)
        if not fused:  # only out-of-domain modalities: nothing reached the fusion
            prior = self.prior()
            return SentimentResult(score=prior.score, probs=prior.probs, used=(), per_modality=per)
        return SentimentResult(score=score, probs=probs, used=fused, per_modality=per)


__all__ = ["SentimentModel", "SENTIMENT_CLASSES"]
