"""The unimodal stack: the three encoders together, turning a batch of window features into
(1) what each modality says on its own and (2) the inputs of the fusion model.

Training (fusion stage, evaluation) and the live runtime call this same code.

Batch (torch, padded; masks True where a step holds an observation):
- text_x [B, Lt, 384], text_valid [B, Lt]       MiniLM token features (or, from the
  training cache, the text encoder's outputs: text_states [B, Lt, 384], text_score [B],
  text_logits [B, 3])
- audio_x [B, Fa, 387], audio_valid [B, Fa]     audio frame features
- vision_x [B, Tv, 135], vision_valid [B, Tv]   per frame: face embedding (128) and
                                                expression logits (7) of the face encoder
- present [B, 3] bool                           text, audio, vision reached the model

Each modality's own estimate is a score with ordinal probabilities (``models.ordinal``):
text's score is the text encoder's, audio's and vision's the expected score of their
emotion-mapped sentiment probabilities; each modality's spread is fitted on validation
data (``models.train``'s calibrate stage). So an estimate's label, probabilities and
confidence agree with its score, as the fused result's do. The fusion model's evidence
input keeps the encoders' own class probabilities, as it was trained.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from models.encoders.audio import AudioEncoder, AudioEncoderConfig
from models.encoders.face import FaceEncoder, FaceEncoderConfig
from models.encoders.text import TextEncoder, TextEncoderConfig
from models.labels import EMOTIONS, FER_EMOTIONS, sentiment_matrix
from models.layers import masked_mean
from models.ordinal import ordinal_logits


class UnimodalStack(nn.Module):
    def __init__(
        self,
        text: TextEncoder | None = None,
        audio: AudioEncoder | None = None,
        face: FaceEncoder | None = None,
    ):
        super().__init__()
        self.text = text or TextEncoder(TextEncoderConfig())
        self.audio = audio or AudioEncoder(AudioEncoderConfig())
        self.face = face or FaceEncoder(FaceEncoderConfig())
        # calibration temperatures, fitted on validation data after training
        self.register_buffer("temperature", torch.ones(3))  # text classes, audio emotions, face emotions
        # mean score of each sentiment class in the text training data, to turn the
        # sentiment probabilities of audio / vision into a score
        self.register_buffer("class_scores", torch.tensor([-1.5, 0.0, 1.5]))
        # ordinal spread of each modality's own estimate (text, audio, vision), fitted on
        # validation data after training
        self.register_buffer("spread", torch.ones(3))
        self.register_buffer("audio_map", torch.from_numpy(sentiment_matrix(EMOTIONS)))
        self.register_buffer("face_map", torch.from_numpy(sentiment_matrix(FER_EMOTIONS)))

    def text_probs(self, logits):
        return (logits / self.temperature[0]).softmax(-1)

    def audio_probs(self, logits):
        return (logits / self.temperature[1]).softmax(-1)

    def face_probs(self, logits):
        return (logits / self.temperature[2]).softmax(-1)

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns the fusion inputs (text, text_valid, audio, audio_valid, vision,
        vision_valid, evidence, present) and per-modality estimates est_{t,a,v}_score [B],
        est_{t,a,v}_probs [B, 3] (ordinal, coherent with the score), est_a_emotions [B, 9],
        est_v_emotions [B, 7], and est_t_clamped [B] (the text encoder's raw score lay
        outside [-3, 3] and was clamped: counted by the evaluation)."""
        present = batch["present"].bool()
        tv = batch["text_valid"].bool() & present[:, :1]
        av = batch["audio_valid"].bool() & present[:, 1:2]
        vv = batch["vision_valid"].bool() & present[:, 2:3]
        # a modality whose every step is missing is absent
        present = present & torch.stack([tv.any(1), av.any(1), vv.any(1)], dim=1)
        pt, pa, pv = (present[:, i : i + 1].float() for i in range(3))

        if "text_states" in batch:  # text encoder outputs computed ahead (training cache)
            t = {"states": batch["text_states"], "score": batch["text_score"], "logits": batch["text_logits"]}
        else:
            t = self.text(batch["text_x"], tv)
        t_probs = self.text_probs(t["logits"])
        t_clamped = t["score"].abs() > 3.0
        t_score = t["score"].clamp(-3.0, 3.0)

        a = self.audio(batch["audio_x"], av)
        a_emotions = self.audio_probs(a["logits"])
        a_probs = a_emotions @ self.audio_map

        vx = batch["vision_x"]
        v_emotions = masked_mean(self.face_probs(vx[..., -len(FER_EMOTIONS) :]), vv)
        v_probs = v_emotions @ self.face_map

        evidence = torch.cat(
            [
                torch.cat([t_score.unsqueeze(-1) / 3.0, t_probs], -1) * pt,
                torch.cat([a_emotions, a_probs], -1) * pa,
                torch.cat([v_emotions, v_probs], -1) * pv,
            ],
            dim=-1,
        )
        a_score = a_probs @ self.class_scores
        v_score = v_probs @ self.class_scores

        def coherent(score, m):
            return ordinal_logits(score, self.spread[m].expand_as(score)).softmax(-1)

        return {
            "text": t["states"],
            "text_valid": tv,
            "audio": a["states"],
            "audio_valid": a["valid"] & present[:, 1:2],
            "vision": vx,
            "vision_valid": vv,
            "evidence": evidence,
            "present": present,
            "est_t_score": t_score,
            "est_t_probs": coherent(t_score, 0),
            "est_t_clamped": t_clamped & present[:, 0],
            "est_a_score": a_score,
            "est_a_probs": coherent(a_score, 1),
            "est_a_emotions": a_emotions,
            "est_v_score": v_score,
            "est_v_probs": coherent(v_score, 2),
            "est_v_emotions": v_emotions,
        }


def pad_batch(
    seqs: list[np.ndarray | None], dim: int, valids: list[np.ndarray | None] | None = None, min_len: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads [T_i, dim] arrays (None = nothing) to [B, T, dim] float32 with a [B, T] mask;
    ``valids`` optionally gives each array's own [T_i] mask (steps outside it are zeroed)."""
    length = max([min_len] + [len(s) for s in seqs if s is not None])
    x = np.zeros((len(seqs), length, dim), np.float32)
    m = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        if s is not None and len(s):
            v = np.ones(len(s), bool) if valids is None or valids[i] is None else valids[i]
            x[i, : len(s)] = s * v[:, None]
            m[i, : len(s)] = v
    return torch.from_numpy(x), torch.from_numpy(m)
