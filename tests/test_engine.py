"""The inference engine behind the sessions: the batcher (order, batch limits, the deadline,
a failing request that spoils no one else's), device selection that fails loudly, and
batched results equal to each window's own."""

import threading

import numpy as np
import pytest

from models.batcher import Batcher, Seats
from models.providers import DeviceUnavailable, onnx_providers, whisper_device
from models.types import VISION_DIM, Modality, SequenceFeatures, WindowFeatures


def _double(xs):
    if any(x < 0 for x in xs):
        raise ValueError("negative")
    return [2 * x for x in xs]


def test_batcher_keeps_order_and_respects_max_batch():
    b = Batcher(_double, max_batch=2, start=False)
    futures = [b.submit(x) for x in range(5)]
    while b.step():
        pass
    assert [f.result(timeout=0) for f in futures] == [0, 2, 4, 6, 8]
    assert dict(b.sizes) == {2: 2, 1: 1}


def test_a_failing_request_spoils_no_one_else():
    b = Batcher(_double, max_batch=8, start=False)
    futures = [b.submit(x) for x in (1, -1, 3)]
    assert b.step() == 3
    assert futures[0].result(timeout=0) == 2 and futures[2].result(timeout=0) == 6
    with pytest.raises(ValueError, match="negative"):
        futures[1].result(timeout=0)
    assert b.failures == 1


def test_wrong_result_count_is_an_error_not_a_mixup():
    b = Batcher(lambda xs: xs[:1], max_batch=8, start=False)
    futures = [b.submit(x) for x in (1, 2)]
    b.step()
    # run alone, each request gets its own answer
    assert [f.result(timeout=0) for f in futures] == [1, 2]
    bad = Batcher(lambda xs: [], start=False)
    f = bad.submit(1)
    bad.step()
    with pytest.raises(RuntimeError, match="0 results for 1"):
        f.result(timeout=0)


def test_worker_runs_a_lone_request_after_the_deadline_and_fills_batches_under_load():
    lone = Batcher(_double, max_batch=64, max_wait_s=0.005)
    assert lone.submit(21).result(timeout=30) == 42  # does not wait for company forever
    lone.close()
    gate = threading.Event()

    def slow(xs):
        gate.wait(30)
        return _double(xs)

    b = Batcher(slow, max_batch=4, max_wait_s=0.005)
    first = b.submit(0)  # runs alone and holds the worker at the gate
    rest = [b.submit(x) for x in range(1, 9)]  # queue up behind it
    gate.set()
    assert first.result(timeout=30) == 0
    assert [f.result(timeout=30) for f in rest] == [2 * x for x in range(1, 9)]
    assert b.sizes[4] == 2  # the queued eight ran as two full batches
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(1)


def test_close_runs_what_is_queued():
    b = Batcher(_double, start=False)
    f = b.submit(5)
    b.close()
    assert f.result(timeout=0) == 10


def test_bad_batcher_settings_are_refused():
    with pytest.raises(ValueError):
        Batcher(_double, max_batch=0, start=False)
    with pytest.raises(ValueError):
        Batcher(_double, max_wait_s=-1, start=False)


def test_provider_selection_fails_loudly_without_a_gpu():
    cpu = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu", gpu) == cpu
    assert onnx_providers("auto", cpu) == cpu
    assert onnx_providers("auto", gpu) == gpu
    assert onnx_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(DeviceUnavailable, match="requirements-gpu.txt"):
        onnx_providers("cuda", cpu)
    with pytest.raises(ValueError, match="device must be"):
        onnx_providers("gpu", cpu)
    assert whisper_device("cpu") == ("cpu", "int8")
    assert whisper_device("auto", cuda_devices=0) == ("cpu", "int8")
    assert whisper_device("auto", cuda_devices=1) == ("cuda", "float16")
    with pytest.raises(DeviceUnavailable):
        whisper_device("cuda", cuda_devices=0)


def test_the_shipped_model_says_where_it_runs_and_refuses_a_missing_gpu():
    import onnxruntime as ort

    from models.runtime import SentimentModel

    m = SentimentModel.load(device="cpu")
    assert m.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DeviceUnavailable):
            SentimentModel.load(device="cuda")


@pytest.fixture(scope="module")
def windows(model, face_frame, speech_clip):
    """Windows of different lengths and modality subsets, as sessions would send them."""
    from models.features.vision import FaceAnalyzer

    crop = FaceAnalyzer()(face_frame).crop
    assert crop is not None
    texts = ["i really loved this movie, it was wonderful", "no", "this is the worst thing i have ever seen, awful"]
    speech = np.tile(speech_clip, 3)
    out = []
    for i, text in enumerate(texts):  # live windows: 3 s of audio each, different text and frames
        out.append(
            WindowFeatures(
                text=model.text_features(text),
                audio=model.audio_features(speech[i * 8000 : i * 8000 + 48000]),
                vision=model.face_features([crop] * (4 + 3 * i) + [None] * i),
            )
        )
    # a shorter window (the end of a stream): audio of another length, batched apart
    out.append(WindowFeatures(text=model.text_features("fine, i guess"), audio=model.audio_features(speech_clip[:16000])))
    out.append(WindowFeatures(vision=out[0].vision, reliability={Modality.VISION: 0.5}))
    out.append(WindowFeatures())  # nothing present: the prior
    return out


def _same(a, b, tol=1e-5):
    assert a.used == b.used
    assert abs(a.score - b.score) < tol and np.allclose(a.probs, b.probs, atol=tol)
    assert set(a.per_modality) == set(b.per_modality)
    for m in a.per_modality:
        assert abs(a.per_modality[m].score - b.per_modality[m].score) < tol


def test_batched_predict_equals_each_window_alone(model, windows, monkeypatch):
    alone = [model.predict(w) for w in windows]
    sizes = []
    run = model._run_stack
    monkeypatch.setattr(model, "_run_stack", lambda b: sizes.append(len(b.present)) or run(b))
    for a, b in zip(alone, model.predict_many(windows)):
        _same(a, b)
    # the three 3 s windows in one pass; the 1 s one and the vision-only one (no audio) apart
    assert sorted(sizes) == [1, 1, 3]
    for a, b in zip(reversed(alone), model.predict_many(windows[::-1])):
        _same(a, b)


def test_engine_batches_sessions_and_matches_the_model(model, windows):
    from models.engine import InferenceEngine

    engine = InferenceEngine(model, start=False)
    futures = [engine.predict.submit(w) for w in windows]
    engine.predict.step()
    assert engine.stats()["engine-fusion"] == {len(windows): 1}
    for w, f in zip(windows, futures):
        _same(model.predict(w), f.result(timeout=0))
    bad = WindowFeatures(text=windows[0].text, reliability={Modality.TEXT: 2.0})  # refused by the model
    futures = [engine.predict.submit(w) for w in (windows[0], bad, windows[1])]
    engine.predict.step()
    _same(model.predict(windows[0]), futures[0].result(timeout=0))
    _same(model.predict(windows[1]), futures[2].result(timeout=0))
    with pytest.raises(ValueError, match="reliability"):
        futures[1].result(timeout=0)


def test_engine_clients_from_many_threads_get_their_own_answers(model, windows, face_frame):
    from models.engine import InferenceEngine
    from models.features.vision import FaceAnalyzer

    crop = FaceAnalyzer()(face_frame).crop
    engine = InferenceEngine(model, max_wait_s=0.01)
    texts = ["what a lovely day", "", "i hate waiting in lines", "it is a chair"]
    got: dict[int, tuple] = {}

    def session(i):
        c = engine.client()
        got[i] = (
            c.predict(windows[i % len(windows)]),
            c.face_frames(np.stack([crop] * (i + 1))),
            c.text_features(texts[i % len(texts)]),
        )

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    engine.close()
    assert sorted(got) == list(range(8))
    for i, (result, faces, text) in got.items():
        _same(model.predict(windows[i % len(windows)]), result)
        assert faces.shape == (i + 1, windows[0].vision.values.shape[1])
        assert np.allclose(faces, model.face_frames(np.stack([crop] * (i + 1))), atol=1e-5)
        want = model.text_features(texts[i % len(texts)])
        if want is None:
            assert text is None
        else:
            assert isinstance(text, SequenceFeatures) and np.allclose(text.values, want.values, atol=1e-4)
    assert engine.client().face_sequence is model.face_sequence  # the rest goes to the model


def test_gpu_check_names_each_problem_on_a_cpu_host(capsys):
    from models.providers import gpu_problems, main, report

    r = report()
    assert "onnxruntime" in r["onnxruntime_distributions"] or "onnxruntime-gpu" in r["onnxruntime_distributions"]
    if gpu_problems(r):  # this CPU host: the check fails and says why
        assert main(["--expect-gpu"]) == 1
        assert "not a GPU host" in capsys.readouterr().out
    both = {"onnxruntime_distributions": ["onnxruntime", "onnxruntime-gpu"], "onnxruntime_providers": ["CPUExecutionProvider"]}
    problems = gpu_problems({**both, "ctranslate2_cuda_devices": 0})
    assert len(problems) == 3 and "exactly ['onnxruntime-gpu']" in problems[0]
    good = {
        "onnxruntime_distributions": ["onnxruntime-gpu"],
        "onnxruntime_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "ctranslate2_cuda_devices": 1,
    }
    assert gpu_problems(good) == []


def test_face_encoder_in_onnxruntime_equals_torch(model, fer_test):
    from models.runtime import SentimentModel

    torch_model = SentimentModel.load(use_onnx=False)
    assert model._face_session is not None and torch_model._face_session is None
    crops = fer_test.images[:17]
    assert np.abs(model.face_frames(crops) - torch_model.face_frames(crops)).max() < 1e-5
    assert model.face_frames(crops[:0]).shape == (0, VISION_DIM)
    with pytest.raises(ValueError, match="uint8"):
        model.face_frames(crops.astype(np.float32))


def test_performance_report_names_the_machine_and_the_real_time_limit(tmp_path):
    from streaming.benchmark import write

    stage = {"p50": 10.0, "p95": 12.0}
    res = {
        "machine": "2 cores, Test CPU",
        "gpu": None,
        "date": "2026-12-03",
        "seconds": 4.0,
        "stages": {
            k: stage
            for k in (
                "face mesh, per frame",
                "face encoder, per frame (on arrival)",
                "audio features, 3 s",
                "text features (a new transcript)",
                "stack + fusion (predict)",
            )
        },
        "fusion_batch1_ms": {"torch": 7.0, "onnxruntime": 1.5},
        "batching": {1: {"fusion torch": 100, "fusion onnxruntime": 500}, 8: {"fusion torch": 700, "fusion onnxruntime": 2000}},
        "recogniser": [
            {"context": c, "way": w, "sessions": 1, "audio_s": 6.0, "wall_s": 0.8, "rtf_per_session": 0.13, "speech_s_per_s": 7.5}
            for c in ("full", "fit")
            for w in ("threads", "batched")
        ],
        "concurrency": [
            {
                "sessions": n,
                "engine": e,
                "windows": 4 * n,
                "p50_ms": 100.0,
                "p95_ms": p95,
                "real_time": p95 < 1000,
                "cpu_s_per_session_s": 0.2,
            }
            for n, e, p95 in (
                (1, "batched", 120.0),
                (6, "batched", 400.0),
                (16, "batched", 1500.0),
                (1, "direct", 110.0),
                (6, "direct", 1200.0),
            )
        ],
        "rss_mb": 1000.0,
    }
    write(res, tmp_path / "perf")
    md = (tmp_path / "perf.md").read_text()
    assert "2 cores, Test CPU, GPU: none" in md and "unmeasured (no GPU on this machine)" in md
    assert "Largest N in real time, batched: 6" in md and "Largest N in real time, direct: 1" in md
    assert "| recogniser (a decode of a 6.0 s buffer/s) | 800.0 |" in md and "| total | 930.0 |" in md
    assert (tmp_path / "perf.json").is_file()


def test_seats_admit_in_order_and_never_more_than_their_number():
    seats = Seats(1)
    order, inside, most = [], [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def sit(name: str) -> None:
        with seats():
            with lock:
                order.append(name)
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            release.wait()
            with lock:
                inside[0] -= 1

    first = threading.Thread(target=sit, args=("a",))
    first.start()
    while not order:  # "a" holds the seat
        threading.Event().wait(0.001)
    others = []
    for name in "bcd":  # each gets in line before the next starts
        t = threading.Thread(target=sit, args=(name,))
        t.start()
        others.append(t)
        while seats.waiting < len(others):
            threading.Event().wait(0.001)
    release.set()
    for t in [first, *others]:
        t.join()
    assert order == ["a", "b", "c", "d"] and most[0] == 1 and seats.waits == 3


def test_a_batcher_has_a_seat_per_batch_place():
    b = Batcher(_double, max_batch=3, start=False)
    assert b.seat.n == 3
    with pytest.raises(ValueError):
        Seats(0)
