"""One inference engine behind all live sessions, in-process by default.

Each session's pipeline calls its model duck-typed (``face_frames``, ``text_features``,
``predict`` ...). ``InferenceEngine(model)`` holds the one shared ``SentimentModel`` and a
``models.batcher.Batcher`` per batched call; ``engine.client()`` gives a session an object
that looks like the model, but whose batched calls wait in the engine's queues, so the
windows, face crops and transcripts of every session that arrive while a batch runs (or
within ``max_wait_s`` of each other, default 0: a lone request never waits for company)
run as one batch:

    predict(window)       -> SentimentModel.predict_many over the sessions' windows
    face_frames(crops)    -> one face-encoder pass over every session's crops
    text_features(text)   -> one MiniLM pass over every session's transcripts

Each result equals the one the model gives the same input alone, within float rounding
(``tests/test_engine.py``); a request that fails raises in its own session only. Anything
else (``audio_features``, ``face_sequence``, ``prior``, ``text_read`` ...) goes straight
to the model. The batch sizes run are counted in ``stats()``.

Fusion models chosen at run time (``models.fusion.FUSIONS``): a client's ``set_fusion(name)``
sends its windows to that model's own batcher (``predict_for``), made on first use over
``SentimentModel.with_fusion(name)``, which shares the encoders and their sessions.
"""

from __future__ import annotations

import numpy as np

from models.batcher import Batcher
from models.types import SequenceFeatures, WindowFeatures


class InferenceEngine:
    def __init__(self, model, max_batch: int = 32, max_wait_s: float = 0.0, start: bool = True) -> None:
        self.model = model
        kw = dict(max_batch=max_batch, max_wait_s=max_wait_s, start=start)
        self.predict = Batcher(self._predict, name="engine-fusion", **kw)
        self.faces = Batcher(self._faces, name="engine-faces", **kw)
        self.texts = Batcher(self._texts, name="engine-text", **kw)
        self._kw = kw
        self._predictors = {getattr(model, "fusion_name", "lnln"): self.predict}
        #: other batchers the app hangs on the engine (the shared recogniser), counted and closed with it
        self.extra: list[Batcher] = []

    def _predict(self, windows: list[WindowFeatures]):
        return self.model.predict_many(windows)

    def predict_for(self, name: str) -> Batcher:
        """The batcher of fusion ``name``'s windows (ValueError for one not shipped)."""
        if name not in self._predictors:
            variant = self.model.with_fusion(name)
            self._predictors[name] = Batcher(variant.predict_many, name=f"engine-fusion-{name}", **self._kw)
        return self._predictors[name]

    def _faces(self, crops: list[np.ndarray]):
        return faces_in_one_pass(self.model, crops)

    def _texts(self, texts: list[str]):
        return self.model.text_features_many(texts)

    def client(self) -> EngineClient:
        """A session's view of the model, batched through this engine."""
        return EngineClient(self.model, self.predict, self.faces, self.texts, self.predict_for)

    def stats(self) -> dict[str, dict[int, int]]:
        """Batch size -> batches run, per batcher."""
        return {b.name: dict(sorted(b.sizes.items())) for b in self._batchers()}

    def _batchers(self) -> list[Batcher]:
        return [*self._predictors.values(), self.faces, self.texts, *self.extra]

    def close(self) -> None:
        for b in self._batchers():
            b.close()


def faces_in_one_pass(model, crops: list[np.ndarray]) -> list[np.ndarray]:
    """``model.face_frames`` of several sessions' (non-empty) crop stacks in one pass, split
    back per session."""
    rows = model.face_frames(np.concatenate(crops))
    return np.split(rows, np.cumsum([len(c) for c in crops])[:-1])


class EngineClient:
    """Duck-types ``SentimentModel`` for one session (see the module docstring): ``predict``,
    ``face_frames`` and ``text_features`` go to the callables given (the engine's batchers,
    or a Ray Serve deployment's handle, ``models.serve_ray.ray_client``); the rest to ``model``.
    ``predict_for(name)`` gives the predict callable of fusion ``name`` (``set_fusion``);
    without it only the model's own fusion is served."""

    def __init__(self, model, predict, faces, texts, predict_for=None) -> None:
        self.model = model
        self._predict, self._faces, self._texts = predict, faces, texts
        self._predict_for = predict_for
        self.fusion_name = getattr(model, "fusion_name", "lnln")

    def __getattr__(self, name):  # everything not batched: the shared model itself
        return getattr(self.model, name)

    def set_fusion(self, name: str) -> None:
        """This session's windows go to fusion ``name`` from now on; ValueError for one not
        shipped, or one this serving path does not have (nothing changes then)."""
        if name == self.fusion_name:
            return
        if self._predict_for is None:
            raise ValueError(f"this server runs the {self.fusion_name} fusion only")
        self._predict = self._predict_for(name)
        self.fusion_name = name

    def predict(self, window: WindowFeatures):
        return self._predict(window)

    def face_frames(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if len(crops) == 0:
            return self.model.face_frames(crops)
        return self._faces(crops)

    def text_features(self, text: str) -> SequenceFeatures | None:
        if not isinstance(text, str) or not text.strip():
            return None
        return self._texts(text)


__all__ = ["EngineClient", "InferenceEngine", "faces_in_one_pass"]
