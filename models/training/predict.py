"""Predictions of trained encoders, shared by training and evaluation.

In: trained encoders (or a run folder of them) and cached features or images; out: numpy
arrays of scores, logits or face-view features. Nothing here trains, so
``models.training.evaluate`` imports this module without any trainer.

- ``predict_text``: token feature arrays -> text scores [N] and class logits [N, 3];
- ``predict_text_models``: token feature arrays -> the text encoder's and the fusion's
  (text only) scores and probabilities, through a ``SentimentModel``;
- ``predict_audio`` / ``clip_logits``: audio windows -> emotion logits [N, 9], per window
  or as each clip's mean over its windows;
- ``jitter_views`` / ``face_view_features``: FER-2013 images -> jittered views and their
  face-encoder embedding + logits, the stand-in for a window's face frames;
- ``load_stack``: a run folder -> the ``UnimodalStack`` of its encoders, calibration and
  in-domain statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from models import checkpoint
from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import (
    FRAME_FLIP,
    FaceEncoder,
    FaceEncoderConfig,
    encode_faces,
)
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.labels import EMOTIONS
from models.training.composed import FACE_VIEWS
from models.types import TEXT_DIM, VISION_DIM, Modality
from models.unimodal import UnimodalStack, pad_batch, stack_batch

if TYPE_CHECKING:
    from models.runtime import SentimentModel


@torch.no_grad()
def predict_text(model: TextEncoder, feats: list[np.ndarray], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N], class logits [N, 3]) of token feature arrays."""
    model.eval()
    order = np.argsort([len(f) for f in feats])
    scores = np.zeros(len(feats), np.float32)
    logits = np.zeros((len(feats), 3), np.float32)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        x, m = pad_batch([feats[j] for j in idx], TEXT_DIM)
        out = model(x, m)
        scores[idx] = out["score"].numpy()
        logits[idx] = out["logits"].numpy()
    return scores, logits


def clip_logits(model: AudioEncoder, feats, by_clip: dict[int, list[int]], rows) -> np.ndarray:
    """Emotion logits [N, 9] of clips: the mean over each clip's windows (each window is
    what the live pipeline would encode)."""
    idx = [i for r in rows for i in by_clip[int(r)]]
    logits = predict_audio(model, [feats[i].astype(np.float32) for i in idx])
    out, k = np.zeros((len(rows), logits.shape[1]), np.float32), 0
    for j, r in enumerate(rows):
        n = len(by_clip[int(r)])
        out[j] = logits[k : k + n].mean(0)
        k += n
    return out


@torch.no_grad()
def predict_audio(model: AudioEncoder, seqs: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """Emotion logits [N, 9] of whole clips."""
    model.eval()
    out = np.zeros((len(seqs), len(EMOTIONS)), np.float32)
    for i in range(0, len(seqs), batch):
        x, m = pad_batch(seqs[i : i + batch], seqs[0].shape[1])
        out[i : i + batch] = model(x, m)["logits"].numpy()
    return out


def jitter_views(images: np.ndarray, n_views: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, n_views, 48, 48]: view 0 the image, the others small head movements
    (rotation +-8 deg, shift +-2 px, scale +-5 %) and lighting changes (+-10 %)."""
    import cv2

    out = np.empty((len(images), n_views) + images.shape[1:], np.uint8)
    out[:, 0] = images
    for i, img in enumerate(images):
        for v in range(1, n_views):
            m = cv2.getRotationMatrix2D((23.5, 23.5), rng.uniform(-8, 8), rng.uniform(0.95, 1.05))
            m[:, 2] += rng.uniform(-2, 2, 2)
            w = cv2.warpAffine(img, m, (48, 48), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            w = w * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12)
            out[i, v] = np.clip(w, 0, 255).astype(np.uint8)
    return out


def face_view_features(
    model: FaceEncoder, images: np.ndarray, rng: np.random.Generator, n_total: int | None = None, desc: str = "face views"
) -> np.ndarray:
    """fp16 [n_total or N, FACE_VIEWS, VISION_DIM]: face-encoder embedding + logits of FACE_VIEWS
    jittered views (``jitter_views``) of each uint8 [N, 48, 48] image; rows past N stay zero."""
    out = np.zeros((n_total or len(images), FACE_VIEWS, VISION_DIM), np.float16)
    for i in tqdm(range(0, len(images), 2048), desc=desc):
        views = jitter_views(images[i : i + 2048], FACE_VIEWS, rng)
        n = len(views)
        pred = encode_faces(model, views.reshape(-1, 48, 48), flip=FRAME_FLIP)
        out[i : i + n] = np.concatenate([pred["emb"], pred["logits"]], 1).reshape(n, FACE_VIEWS, VISION_DIM)
    return out


def load_stack(run: Path) -> UnimodalStack:
    text, _ = checkpoint.load(run / "text_encoder.safetensors", TextEncoder, TextEncoderConfig)
    audio, _ = checkpoint.load(run / "audio_encoder.safetensors", AudioEncoder, AudioEncoderConfig)
    face, _ = checkpoint.load(run / "face_encoder.safetensors", FaceEncoder, FaceEncoderConfig)
    stack = UnimodalStack(text, audio, face).eval()
    calib = run / "calibration.json"
    if calib.exists():
        c = json.loads(calib.read_text())
        stack.temperature.copy_(torch.tensor(c["unimodal_temperature"]))
        stack.class_scores.copy_(torch.tensor(c["class_scores"]))
        if "unimodal_spread" in c:
            stack.spread.copy_(torch.tensor(c["unimodal_spread"]))
    if (run / "domain.safetensors").exists():
        from models import domain

        stack.load_domain(domain.load(run / "domain.safetensors"))
    return stack


def predict_text_models(model: SentimentModel, feats: list[np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
    """Text encoder alone and the fusion model with text only, on token features."""
    order = np.argsort([len(f) for f in feats])
    enc = np.zeros(len(feats), np.float32)
    fus = np.zeros(len(feats), np.float32)
    fus_p = np.zeros((len(feats), 3))
    enc_p = np.zeros((len(feats), 3))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        s = model.stack(stack_batch([feats[j] for j in idx], [None] * len(idx), [None] * len(idx)))
        enc[idx] = s.estimates[Modality.TEXT].score.numpy()
        enc_p[idx] = s.estimates[Modality.TEXT].probs.numpy()
        fus[idx], fus_p[idx] = model.fuse(s)
    return {"encoder": enc, "encoder_probs": enc_p, "fusion": fus, "fusion_probs": fus_p}
