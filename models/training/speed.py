"""The fusion model's speed, for the evaluation document.

In: an assets folder with onnx/fusion.onnx (``python -m models.training.export``); out:
the latency of one fusion forward pass in onnxruntime (batch 1, one thread, a typical 3 s
window), alone and with the agreement step and smoothing that follow it per window, as a
dict of milliseconds with the machine's name (``cpu_name``).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from models.types import AUDIO_FRAMES, VISION_FRAMES


def _session(assets: Path, stem: str, threads: int):
    """An onnxruntime CPU session of ``assets/onnx/<stem>.onnx`` on ``threads`` threads, or
    an error dict when the file is missing."""
    import onnxruntime as ort

    path = assets / "onnx" / f"{stem}.onnx"
    if not path.exists():
        return {"error": f"{path} missing: run python -m models.training.export"}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _window(batch: int, text_pieces: int, seed: int) -> dict:
    """Fusion inputs of ``batch`` full 3 s windows (every modality and word piece present;
    the audio encoder's states come at half the frame rate)."""
    from models.training.export import random_fusion_inputs

    feed = random_fusion_inputs(batch, text_pieces, AUDIO_FRAMES // 2, VISION_FRAMES, np.random.default_rng(seed))
    feed["present"][:] = True
    feed["text_valid"][:] = True
    return feed


def benchmark_fusion(assets: Path, n: int = 500, stem: str = "fusion") -> dict:
    """Fusion forward pass in onnxruntime, batch 1, one thread, a typical 3 s window
    (20 word pieces, 75 audio states, 15 face frames: ``models.types``' window shape); also
    with what follows it per window: the agreement step (``models.agreement.combine``) and
    the smoothing. ``stem``: which fusion (``models.fusion.FUSIONS[name].stem``)."""
    sess = _session(assets, stem, 1)
    if isinstance(sess, dict):
        return sess
    feed = _window(1, 20, 0)
    for _ in range(50):
        sess.run(None, feed)
    from models.agreement import combine
    from models.types import Modality, SentimentResult
    from streaming.smoothing import Smoother

    smoother = Smoother()
    est, obs, w = np.array([[0.8, -1.2, 0.3]]), np.ones((1, 3), bool), np.ones((1, 3))
    times, post = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        score, _, _, spread = sess.run(None, feed)
        t1 = time.perf_counter()
        s, p = combine(score, spread, est, obs, w, 1.0, 0.2)  # what SentimentModel.fuse adds
        smoother.update(SentimentResult(float(s[0]), p[0], (Modality.TEXT,)))  # and the pipeline's smoothing
        t2 = time.perf_counter()
        times.append(1000 * (t1 - t0))
        post.append(1000 * (t2 - t1))
    total = np.array(times) + np.array(post)
    return {
        "p50_ms": round(float(np.median(times)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "mean_ms": round(float(np.mean(times)), 3),
        "with_agreement_and_smoothing_p50_ms": round(float(np.median(total)), 3),
        "agreement_and_smoothing_p50_ms": round(float(np.median(post)), 3),
        "n": n,
        "machine": f"{platform.machine()}, {cpu_name()}, {torch.get_num_threads()} torch threads available",
    }


def latency_by_text_length(assets: Path, stem: str = "fusion", lengths=(5, 12, 20, 40), n: int = 300) -> dict:
    """p50 ms of the fusion ``stem`` at batch 1 on one thread in onnxruntime, by the number of
    text word pieces in the window (audio and vision as in a full 3 s window): {pieces: ms}.
    The lengths are timed in turn, round after round, so a busy spell touches them alike."""
    sess = _session(assets, stem, 1)
    if isinstance(sess, dict):
        return sess
    feeds = {k: _window(1, k, k) for k in lengths}
    for feed in feeds.values():
        for _ in range(30):
            sess.run(None, feed)
    times = {k: [] for k in lengths}
    for _ in range(n):
        for k, feed in feeds.items():
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[k].append(1000 * (time.perf_counter() - t0))
    return {str(k): round(float(np.median(v)), 3) for k, v in times.items()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def batched_throughput(assets: Path, stem: str = "fusion", batch: int = 256, threads: int = 2, seconds: float = 3.0) -> dict:
    """Windows per second of the fusion ``stem`` in onnxruntime at ``batch`` windows a call
    (typical 3 s windows, every modality present), on ``threads`` threads."""
    sess = _session(assets, stem, threads)
    if isinstance(sess, dict):
        return sess
    feed = _window(batch, 20, 0)
    for _ in range(3):
        sess.run(None, feed)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, feed)
        calls += 1
    dt = time.perf_counter() - t0
    return {"batch": batch, "threads": threads, "windows_per_s": round(calls * batch / dt), "machine": cpu_name()}
