"""Scale-out on Ray Serve: the batched model calls as a Ray Serve deployment, the Gradio
front end (each browser session's streaming state) calling it through a handle.

    python app.py --serve ray [--address ray://head:10001]      # joins a cluster, or starts a local one
    serve run deploy/serve.yaml                                   # the same deployment on a cluster

``Models`` holds one ``SentimentModel`` per replica and three ``@serve.batch`` methods, the
same three the embedded ``models.engine.InferenceEngine`` batches: windows
(``predict_many``), face crops (one face-encoder pass) and transcripts (one MiniLM pass).
Replicas autoscale on queued requests; on GPU hosts each takes a fraction of a GPU
(``gpus``, default 0: CPU). ``ray_client`` gives a session the same
``models.engine.EngineClient`` the embedded engine gives: the batched calls go to the deployment, the rest (audio
features, assembling a window's frames) stays in the front end's own model. For the same
window both give the same result (``tests/test_serve_ray.py``).

``Recogniser`` is the speech recogniser as its own deployment (its own Serve application,
``start_recogniser``): one Whisper per replica, a ``@serve.batch`` of the sessions' buffer
decodes (``streaming.whisper_batch.WhisperDecoder.decode_many``), autoscaling apart from
the models; ``ray_decoder`` is what each session's ``StreamingASR`` decodes through. The
streaming state (buffer, LocalAgreement, trust checks) stays in the front end.

Ray is optional (``requirements-scale.txt``); nothing imports this module unless asked.
"""

from __future__ import annotations

import numpy as np
import ray
from ray import serve

from models.engine import EngineClient, faces_in_one_pass
from models.types import WindowFeatures

MAX_BATCH = 32
WAIT_S = 0.004
APP_NAME = "sentiment"
ASR_APP_NAME = "recogniser"
ASR_BATCH, ASR_WAIT_S = 8, 0.01


@serve.deployment(
    name="Models",
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
    max_ongoing_requests=64,
)
class Models:
    def __init__(self, assets: str | None = None, device: str = "cpu", fusion: str = "lnln") -> None:
        from models.runtime import SentimentModel

        self.model = SentimentModel.load(assets, device=device, fusion=fusion)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def predict(self, windows: list[WindowFeatures]):
        return self.model.predict_many(windows)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def faces(self, crops: list[np.ndarray]):
        return faces_in_one_pass(self.model, crops)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=WAIT_S)
    async def texts(self, texts: list[str]):
        return self.model.text_features_many(texts)

    def providers(self) -> list[str]:
        return self.model.providers


@serve.deployment(
    name="Recogniser",
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    max_ongoing_requests=32,
)
class Recogniser:
    def __init__(self, device: str = "cpu", threads: int = 0) -> None:
        from streaming.asr import StreamingASR
        from streaming.whisper_batch import WhisperDecoder

        whisper = StreamingASR(device=device, threads=threads or 1).model
        self.decoder = WhisperDecoder(whisper)

    @serve.batch(max_batch_size=ASR_BATCH, batch_wait_timeout_s=ASR_WAIT_S)
    async def decode(self, requests: list[tuple]):  # (audio, prompt, speech spans)
        return self.decoder.decode_many(requests)


def start_recogniser(device: str = "cpu", gpus: float = 0.0, threads: int = 0):
    """Deploys ``Recogniser`` (as the Serve application "recogniser") on the Ray cluster
    ``start`` joined; returns its handle."""
    opts = {"num_gpus": gpus} if gpus else {}
    bound = Recogniser.options(ray_actor_options=opts).bind(device, threads)
    return serve.run(bound, name=ASR_APP_NAME, route_prefix=None)


def ray_decoder(handle):
    """A ``StreamingASR`` decoder (one ``(audio, prompt, spans)`` -> ``Decoded``) on the deployment."""
    return lambda request: handle.decode.remote(request).result()


def application(assets: str | None = None, device: str = "cpu", gpus: float = 0.0, fusion: str = "lnln"):
    """The bound deployment; ``gpus``: the fraction of a GPU each replica takes."""
    opts = {"num_gpus": gpus} if gpus else {}
    return Models.options(ray_actor_options=opts).bind(assets, device, fusion)


def start(address: str | None = None, num_cpus: int | None = None, device: str = "cpu", gpus: float = 0.0, fusion: str = "lnln"):
    """Joins the Ray cluster at ``address`` (None: starts a local one), deploys ``Models``
    and returns its handle."""
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    return serve.run(application(device=device, gpus=gpus, fusion=fusion), name=APP_NAME, route_prefix=None)


def stop() -> None:
    serve.shutdown()
    ray.shutdown()


def ray_client(handle, model) -> EngineClient:
    """A session's view of the model, its batched calls sent to the deployment ``handle``
    (the same ``EngineClient`` the embedded engine gives)."""
    return EngineClient(
        model,
        lambda window: handle.predict.remote(window).result(),
        lambda crops: handle.faces.remote(crops).result(),
        lambda text: handle.texts.remote(text).result(),
    )


# what deploy/serve.yaml imports
app = application()
recogniser_app = Recogniser.bind()

__all__ = ["Models", "Recogniser", "application", "ray_client", "ray_decoder", "start", "start_recogniser", "stop"]
