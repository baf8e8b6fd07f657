"""Composed trimodal windows for training and testing the fusion model.

No corpus here has text, speech and face of the same moment, so windows are composed:
a transcript from CMU-MOSI / CMU-MOSEI, a speech clip from RAVDESS / EmoDB and a face
from FER-2013 whose sentiment classes match (``models.types.score_to_class`` of the text
label; ``models.labels`` maps the emotions). The window's target is the transcript's
sentiment score and class. Each split draws only on the same split of every corpus
(speech split by speaker), so the test windows are built from test data alone.

A window is 3 s: audio is a 3 s stretch of the clip (150 frames, the whole clip when
shorter); vision is 15 frames (5 per second) of one still face, each frame one of a few
jittered views of it (``FACE_VIEWS``). These are composed, acted and posed data: they
show how the fusion weighs and completes modalities, not how well it reads real
conversations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import load_faces, load_speech, load_text
from models.featurize import Ragged, speech_features, text_features
from models.features.audio import FRAME_RATE
from models.labels import EMOTIONS, sentiment_index
from models.missing import drop_steps
from models.unimodal import pad_batch

WINDOW_SECONDS = 3.0
AUDIO_FRAMES = int(WINDOW_SECONDS * FRAME_RATE)
VISION_FPS = 5
VISION_FRAMES = int(WINDOW_SECONDS * VISION_FPS)
FACE_VIEWS = 4
TEXT_DIM, AUDIO_DIM, VISION_DIM = 384, 387, 135


@dataclass
class WindowSpec:
    text: int  # row of the split's text pool
    audio: int  # row of the split's audio pool
    audio_start: int  # first audio frame of the window
    face: int  # row of the split's face pool
    views: np.ndarray  # [VISION_FRAMES] view index of each frame
    cls: int
    score: float


class ComposedData:
    """Pools of one split and the batches built from them.

    face_views: [N_fer_split, FACE_VIEWS, 135] face-encoder outputs of the split's FER images
    (``models.train`` writes them after training the face encoder).
    """

    def __init__(
        self,
        split: str,
        cache: Path,
        face_views: np.ndarray,
        data_root=None,
        augmented: bool = False,
        text_states: Path | None = None,
    ):
        """text_states: folder with the text encoder's cached outputs (``models.train``'s
        text_states stage); batches then carry those instead of MiniLM features."""
        self.split = split
        self.cache = cache
        self.data_root = data_root
        # text pool: MOSI + MOSEI rows of the split
        self.text_feats: dict[str, Ragged] = {}
        rows = []
        for corpus in ("mosi", "mosei"):
            df = load_text(corpus, data_root)
            feats, _ = text_features(cache, corpus, 0, data_root)
            self.text_feats[corpus] = feats
            for r in np.flatnonzero(df["split"].to_numpy() == split):
                rows.append((corpus, int(r), float(df["score"].iloc[r]), int(df["cls"].iloc[r])))
        self.text_rows = rows
        self.text_score = np.array([r[2] for r in rows], np.float32)
        self.text_cls = np.array([r[3] for r in rows], np.int64)
        # text variants with dropped tokens (train split only): corpus -> (Ragged, row -> item)
        self.text_variants: list[dict[str, tuple[Ragged, dict[int, int], np.ndarray]]] = []
        if augmented:
            from models.featurize import N_TEXT_VARIANTS

            for k in range(1, N_TEXT_VARIANTS + 1):
                v = {}
                for corpus in ("mosi", "mosei"):
                    feats, extra = text_features(cache, corpus, k, data_root)
                    v[corpus] = (feats, {int(r): i for i, r in enumerate(extra["index"])}, extra["rate"])
                self.text_variants.append(v)
        self.encoded = None
        if text_states is not None:
            self.encoded = {}
            for corpus in ("mosi", "mosei"):
                for k in range(len(self.text_variants) + 1):
                    with np.load(text_states / f"text_states_{corpus}_v{k}.npz") as z:
                        rag = Ragged(z["values"], z["offsets"])
                        where = {int(r): i for i, r in enumerate(z["index"])}
                        self.encoded[corpus, k] = (rag, where, z["score"], z["logits"])
        # audio pool: clips of the split's speakers with an unambiguous sentiment
        speech = load_speech(data_root)
        feats, extra = speech_features(cache, 0, data_root)
        by_row = {int(r): i for i, r in enumerate(extra["row"])}
        keep = [
            r
            for r in np.flatnonzero(speech["split"].to_numpy() == split)
            if sentiment_index(speech["emotion"].iloc[r]) >= 0
        ]
        self.audio_feats = [feats[by_row[r]] for r in keep]
        self.audio_cls = np.array([sentiment_index(speech["emotion"].iloc[r]) for r in keep], np.int64)
        self.audio_variants: list[list[np.ndarray]] = []
        if augmented:
            from models.featurize import N_SPEECH_VARIANTS

            for k in range(1, N_SPEECH_VARIANTS + 1):
                f, e = speech_features(cache, k, data_root)
                m = {int(r): i for i, r in enumerate(e["row"])}
                self.audio_variants.append([f[m[r]] for r in keep])
        # face pool
        faces = load_faces(split, data_root)
        fer_sent = np.array([sentiment_index(EMOTIONS[e]) for e in faces.emotion_idx])
        self.face_rows = np.flatnonzero(fer_sent >= 0)
        self.face_cls = fer_sent[self.face_rows]
        if len(face_views) != len(faces):
            raise ValueError(f"face views hold {len(face_views)} images, FER {split} has {len(faces)}")
        self.face_views = face_views[self.face_rows]
        self._by_class = {
            "audio": [np.flatnonzero(self.audio_cls == c) for c in range(3)],
            "face": [np.flatnonzero(self.face_cls == c) for c in range(3)],
        }

    def __len__(self) -> int:
        return len(self.text_rows)

    def compose(self, rng: np.random.Generator, text_rows: np.ndarray | None = None) -> list[WindowSpec]:
        """One window per text row (all rows of the pool by default), partners drawn by class."""
        rows = np.arange(len(self.text_rows)) if text_rows is None else text_rows
        for kind, pools in self._by_class.items():
            for c in set(self.text_cls[rows].tolist()):
                if len(pools[c]) == 0:
                    raise ValueError(f"the {self.split} split has no {kind} sample of sentiment class {c}")
        specs = []
        for t in rows:
            c = int(self.text_cls[t])
            a = int(rng.choice(self._by_class["audio"][c]))
            f = int(rng.choice(self._by_class["face"][c]))
            n = len(self.audio_feats[a])
            start = int(rng.integers(0, n - AUDIO_FRAMES + 1)) if n > AUDIO_FRAMES else 0
            views = rng.integers(0, FACE_VIEWS, VISION_FRAMES)
            specs.append(WindowSpec(int(t), a, start, f, views, c, float(self.text_score[t])))
        return specs

    def text_tokens(self, t: int, variant: int = 0) -> tuple[np.ndarray, float]:
        """Token features of text row t (variant 0 clean, k > 0 a cached dropped copy) and
        the share of word pieces dropped."""
        corpus, row = self.text_rows[t][:2]
        if variant == 0:
            return self.text_feats[corpus][row], 0.0
        feats, where, rates = self.text_variants[variant - 1][corpus]
        i = where[row]
        return feats[i], float(rates[i])

    def text_at_rate(self, specs: list[WindowSpec], rate: float, seed: int) -> list[np.ndarray]:
        """Token features of the windows' texts with word pieces dropped at ``rate`` (seeded)."""
        from models.featurize import text_features_at_rate

        tables = {}
        for corpus in ("mosi", "mosei"):
            rag, extra = text_features_at_rate(self.cache, corpus, self.split, rate, seed, self.data_root)
            tables[corpus] = (rag, {int(r): i for i, r in enumerate(extra["index"])})
        out = []
        for s in specs:
            corpus, row = self.text_rows[s.text][:2]
            rag, where = tables[corpus]
            out.append(rag[where[row]])
        return out

    def batch(
        self,
        specs: list[WindowSpec],
        rates: np.ndarray,
        presence: np.ndarray,
        rng: np.random.Generator,
        text_override: list[np.ndarray] | None = None,
        augment: bool = False,
    ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Padded batch for ``UnimodalStack`` and the text missing rate of each window.

        rates [B, 3]: per-modality step drop rates. Text drops come from cached [UNK]
        copies in training (any rate > 0 picks one; ``augment``), or from ``text_override``
        (features already computed at the wanted rate) in testing.
        presence [B, 3] bool: whole modalities present.
        """
        texts, audios, a_valid, visions, v_valid, text_rate = [], [], [], [], [], []
        use_cache = self.encoded is not None and text_override is None
        t_score, t_logits = np.zeros(len(specs), np.float32), np.zeros((len(specs), 3), np.float32)
        for i, s in enumerate(specs):
            variant = 0
            if augment and rates[i, 0] > 0 and self.text_variants:
                variant = int(rng.integers(1, len(self.text_variants) + 1))
            if text_override is not None:
                tok, tr = text_override[i], float(rates[i, 0])
            elif use_cache:
                corpus, row = self.text_rows[s.text][:2]
                rag, where, sc, lg = self.encoded[corpus, variant]
                j = where[row]
                tok, t_score[i], t_logits[i] = rag[j], sc[j], lg[j]
                tr = 0.0 if variant == 0 else self.text_tokens(s.text, variant)[1]
            else:
                tok, tr = self.text_tokens(s.text, variant)
            texts.append(tok if presence[i, 0] else None)
            text_rate.append(tr if presence[i, 0] else 1.0)

            src = self.audio_feats[s.audio]
            if augment and self.audio_variants and rng.random() < 2 / 3:
                src = self.audio_variants[int(rng.integers(0, len(self.audio_variants)))][s.audio]
            seg = src[s.audio_start : s.audio_start + AUDIO_FRAMES]
            audios.append(seg if presence[i, 1] else None)
            a_valid.append(drop_steps(np.ones(len(seg), bool), rates[i, 1], rng))

            frames = self.face_views[s.face, s.views]
            visions.append(frames if presence[i, 2] else None)
            v_valid.append(drop_steps(np.ones(len(frames), bool), rates[i, 2], rng))

        tx, tv = pad_batch(texts, TEXT_DIM)
        ax, av = pad_batch(audios, AUDIO_DIM, a_valid)
        vx, vv = pad_batch(visions, VISION_DIM, v_valid)
        batch = {
            "text_states" if use_cache else "text_x": tx,
            "text_valid": tv,
            "audio_x": ax,
            "audio_valid": av,
            "vision_x": vx,
            "vision_valid": vv,
            "present": torch.from_numpy(np.asarray(presence, bool)),
        }
        if use_cache:
            batch["text_score"] = torch.from_numpy(t_score)
            batch["text_logits"] = torch.from_numpy(t_logits)
        return batch, np.array(text_rate, np.float32)
