"""Ray Serve path on a local Ray instance (2 CPUs): the deployment's batched results equal
the embedded engine's for the same windows, crops and transcripts."""

import numpy as np
import pytest

from models.types import VISION_DIM, WindowFeatures


@pytest.fixture(scope="module")
def served():
    from models import serve_ray

    handle = serve_ray.start(num_cpus=2)
    yield handle
    serve_ray.stop()


def test_ray_serve_equals_the_embedded_engine(served, face_frame, speech_clip):
    from concurrent.futures import ThreadPoolExecutor

    from models.engine import InferenceEngine
    from models.features.vision import FaceAnalyzer
    from models.runtime import SentimentModel
    from models.serve_ray import ray_client

    model = SentimentModel.load()
    crop = FaceAnalyzer()(face_frame).crop
    texts = ["i really loved this movie", "this was awful and boring", "it is a table"]
    windows = [
        WindowFeatures(
            text=model.text_features(t),
            audio=model.audio_features(np.tile(speech_clip, 2)[i * 8000 : i * 8000 + 48000]),
            vision=model.face_features([crop] * (5 + i)),
        )
        for i, t in enumerate(texts)
    ] + [WindowFeatures()]
    engine = InferenceEngine(model)
    embedded, via_ray = engine.client(), ray_client(served, model)
    assert served.providers.remote().result() == ["CPUExecutionProvider"]
    with ThreadPoolExecutor(4) as pool:  # sessions at once: the deployment batches them
        got = list(pool.map(via_ray.predict, windows))
    for w, r in zip(windows, got):
        e = embedded.predict(w)
        assert r.used == e.used and abs(r.score - e.score) < 1e-5 and np.allclose(r.probs, e.probs, atol=1e-5)
        assert set(r.per_modality) == set(e.per_modality)
    crops = np.stack([crop] * 3)
    assert np.allclose(via_ray.face_frames(crops), embedded.face_frames(crops), atol=1e-5)
    assert via_ray.face_frames(crops[:0]).shape == (0, VISION_DIM)
    a, b = via_ray.text_features(texts[0]), embedded.text_features(texts[0])
    assert np.allclose(a.values, b.values, atol=1e-5) and via_ray.text_features("  ") is None
    engine.close()


def test_ray_recogniser_equals_the_embedded_one(served, speech_clip):
    """The recogniser deployment decodes a session's buffer as the embedded shared decoder
    does (same words, times, confidences), and batches sessions' buffers."""
    from concurrent.futures import ThreadPoolExecutor

    from models import serve_ray
    from streaming.asr import StreamingASR
    from streaming.whisper_batch import WhisperDecoder

    handle = serve_ray.start_recogniser()
    remote = serve_ray.ray_decoder(handle)
    local = WhisperDecoder(StreamingASR(threads=1).model)
    buffers = [(speech_clip, None), (np.concatenate([speech_clip, speech_clip]), "I said it twice."), (speech_clip[:800], None)]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(remote, buffers))
    for r, buf in zip(got, buffers):
        e = local(buf)
        assert r.speech == e.speech and r.frames == e.frames
        rw = [(w.text, w.start, w.end) for s in r.segments for w in s.words]
        assert rw == [(w.text, w.start, w.end) for s in e.segments for w in s.words]
    assert any(s.words for s in got[0].segments)
