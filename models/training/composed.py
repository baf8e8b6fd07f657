"""Composed trimodal windows for training and testing the fusion model.

No corpus here has text, speech and face of the same moment, so windows are composed
from a transcript (CMU-MOSI / CMU-MOSEI, MELD for neutral words), a speech clip (RAVDESS /
EmoDB) and a face (FER-2013). How the partners are drawn is a ``Composition``:

- words windows: the target is the transcript's score and class; the voice carries that
  class with probability ``audio_agree`` and the face with ``vision_agree``, otherwise
  each is drawn from a uniformly random class (which may coincide). ``CLASS_MATCHED``
  (both 1: every partner of the transcript's class) is how earlier versions composed;
  ``REALISTIC`` uses the rates derived in the model card from published unimodal results
  on CMU-MOSI (voice and face agree with the words about as often as they carry sentiment
  in real recordings); ``TRAINING`` draws each window's rates from a wide range so the
  fusion meets both regimes.
- neutral-words windows (share ``neutral_words``): a neutral transcript (MOSI, MOSEI or
  MELD rows of neutral class) with a voice and a face that both carry a negative or
  positive class; the target is that class (score: its mean text score in training).

Each split draws only on the same split of every corpus (speech split by speaker), so the
test windows are built from test data alone. A window is 3 s: audio is one 3 s window of
the clip encoded alone, as live (``models.training.feature_cache.speech_features``);
vision is 15 frames (5 per second) of one still face, each frame one of a few jittered
views of it (``FACE_VIEWS``). These are composed, acted and posed data: they show how the
fusion weighs and completes modalities, not how well it reads real conversations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.labels import EMOTIONS, sentiment_index
from models.training.data import load_faces, load_speech, load_text
from models.training.feature_cache import (
    Ragged,
    speech_features,
    text_features,
    windows_by_clip,
)
from models.training.missing import drop_steps
from models.types import VISION_FRAMES
from models.unimodal import StackBatch, stack_batch

FACE_VIEWS = 4  # jittered views of each FER image, drawn for a window's frames


@dataclass(frozen=True)
class Composition:
    """How a window's partners are drawn (see the module docstring). A rate is a number or
    a (low, high) range drawn uniformly for each window."""

    audio_agree: float | tuple[float, float] = 1.0
    vision_agree: float | tuple[float, float] = 1.0
    neutral_words: float = 0.0
    #: share of voices and faces (each) marked unreliable: reliability ~ U(0.25, 0.7) (a
    #: factor on the in-domain score, ``models.types.WindowFeatures.reliability``) and a
    #: random class, so the fusion learns that a low in-domain score carries little
    unreliable: float = 0.0

    def rate(self, value, rng: np.random.Generator) -> float:
        return float(rng.uniform(*value)) if isinstance(value, tuple) else float(value)


#: every partner of the transcript's class (how the fusion was composed before)
CLASS_MATCHED = Composition()
#: from TFN's unimodal CMU-MOSI results (assets/MODEL_CARD.md, "Realistic composition"):
#: c = 2 Acc-2 - 1 is the share of clips a modality's reader gets right beyond chance;
#: relative to the words' (text 74.8 -> 0.50), audio 65.1 -> 0.30 / 0.50 = 0.6 and vision
#: 68.1 (mean of 69.4 and 66.8) -> 0.36 / 0.50 = 0.7
REALISTIC = Composition(audio_agree=0.6, vision_agree=0.7, neutral_words=0.15)
#: training: rates from the range the published figures span (audio / vision Acc-2 55-69
#: against text 75-85 give 0.15-0.75) up to class-matched, and neutral-words windows
TRAINING = Composition(audio_agree=(0.15, 1.0), vision_agree=(0.15, 1.0), neutral_words=0.2, unreliable=0.15)


@dataclass
class WindowSpec:
    text: int  # row of the split's text pool
    audio: int  # row of the split's audio pool (a clip)
    audio_window: int  # which of the clip's windows
    face: int  # row of the split's face pool
    views: np.ndarray  # [VISION_FRAMES] view index of each frame
    cls: int  # target class
    score: float  # target score
    text_cls: int = -1  # class of the transcript, the voice and the face
    audio_cls: int = -1
    face_cls: int = -1
    reliability: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def conflict(self) -> bool:
        """Whether the three modalities' classes differ."""
        return len({self.text_cls, self.audio_cls, self.face_cls}) > 1


class ComposedData:
    """Pools of one split and the batches built from them.

    face_views: [N_fer_split, FACE_VIEWS, VISION_DIM] face-encoder outputs of the split's
    FER images (the views stage, ``models.training.face.face_views``, writes them after
    training the face encoder).
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
        """text_states: folder with the text encoder's cached outputs (the text_states
        stage, ``models.training.text``); batches then carry those instead of MiniLM
        features."""
        self.split = split
        self.cache = cache
        self.data_root = data_root
        # text pool: MOSI + MOSEI rows of the split
        self.text_feats: dict[str, Ragged] = {}
        rows = []
        for corpus in ("mosi", "mosei", "meld"):
            df = load_text(corpus, data_root)
            feats, _ = text_features(cache, corpus, 0, data_root)
            self.text_feats[corpus] = feats
            for r in np.flatnonzero(df["split"].to_numpy() == split):
                cls = int(df["cls"].iloc[r])
                if corpus == "meld" and cls != 1:
                    continue  # MELD gives neutral words only (it has classes, not scores)
                score = float(df["score"].iloc[r]) if corpus != "meld" else 0.0
                rows.append((corpus, int(r), score, cls))
        self.text_rows = rows
        self.text_score = np.array([r[2] for r in rows], np.float32)
        self.text_cls = np.array([r[3] for r in rows], np.int64)
        corpus_of = np.array([r[0] for r in rows])
        #: rows that make words windows (MOSI / MOSEI) and the neutral rows of every corpus
        self.word_rows = np.flatnonzero(corpus_of != "meld")
        self.neutral_rows = np.flatnonzero(self.text_cls == 1)
        train_df = [load_text(c, data_root) for c in ("mosi", "mosei")]
        ts = np.concatenate([d["score"].to_numpy()[d["split"].to_numpy() == "train"] for d in train_df])
        tc = np.concatenate([d["cls"].to_numpy()[d["split"].to_numpy() == "train"] for d in train_df])
        #: target score of a neutral-words window of class c: the class's mean training score
        self.class_scores = np.array([ts[tc == c].mean() for c in range(3)], np.float32)
        # text variants with dropped tokens (train split only): corpus -> (Ragged, row -> item)
        self.text_variants: list[dict[str, tuple[Ragged, dict[int, int], np.ndarray]]] = []
        if augmented:
            from models.training.feature_cache import N_TEXT_VARIANTS

            for k in range(1, N_TEXT_VARIANTS + 1):
                v = {}
                for corpus in ("mosi", "mosei"):
                    feats, extra = text_features(cache, corpus, k, data_root)
                    v[corpus] = (feats, {int(r): i for i, r in enumerate(extra["index"])}, extra["rate"])
                self.text_variants.append(v)
        self.encoded = None
        if text_states is not None:
            self.encoded = {}
            n_var = len(self.text_variants) + 1
            for corpus, k in [(c, k) for c in ("mosi", "mosei") for k in range(n_var)] + [("meld", 0)]:
                with np.load(text_states / f"text_states_{corpus}_v{k}.npz") as z:
                    rag = Ragged(z["values"], z["offsets"])
                    where = {int(r): i for i, r in enumerate(z["index"])}
                    self.encoded[corpus, k] = (rag, where, z["score"], z["logits"])
        # audio pool: clips of the split's speakers with an unambiguous sentiment, each a
        # list of its windows (encoded alone, as live)
        speech = load_speech(data_root)
        feats, extra = speech_features(cache, 0, data_root)
        by_clip = windows_by_clip(extra)
        keep = [r for r in np.flatnonzero(speech["split"].to_numpy() == split) if sentiment_index(speech["emotion"].iloc[r]) >= 0]
        self.audio_windows = [[feats[i] for i in by_clip[r]] for r in keep]
        self.audio_cls = np.array([sentiment_index(speech["emotion"].iloc[r]) for r in keep], np.int64)
        self.audio_variants: list[list[list[np.ndarray]]] = []
        if augmented:
            from models.training.feature_cache import N_SPEECH_VARIANTS

            for k in range(1, N_SPEECH_VARIANTS + 1):
                f, e = speech_features(cache, k, data_root)
                m = windows_by_clip(e)
                self.audio_variants.append([[f[i] for i in m[r]] for r in keep])
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
        """Words windows per pass: one per MOSI / MOSEI row of the split."""
        return len(self.word_rows)

    def compose(
        self, rng: np.random.Generator, rows: np.ndarray | None = None, how: Composition = CLASS_MATCHED
    ) -> list[WindowSpec]:
        """One window per words row (``rows`` index ``word_rows``; all by default), its
        partners drawn as ``how`` says; a ``how.neutral_words`` share of them become
        neutral-words windows instead."""
        rows = np.arange(len(self.word_rows)) if rows is None else np.asarray(rows)
        for kind, pools in self._by_class.items():
            for c in range(3):
                if len(pools[c]) == 0:
                    raise ValueError(f"the {self.split} split has no {kind} sample of sentiment class {c}")
        specs = []
        for r in rows:
            t = int(self.word_rows[r])
            if how.neutral_words and len(self.neutral_rows) and rng.random() < how.neutral_words:
                t = int(rng.choice(self.neutral_rows))
                c = int(rng.choice((0, 2)))
                ca = cv = c
                score = float(self.class_scores[c])
            else:
                c = int(self.text_cls[t])
                ca = c if rng.random() < how.rate(how.audio_agree, rng) else int(rng.integers(3))
                cv = c if rng.random() < how.rate(how.vision_agree, rng) else int(rng.integers(3))
                score = float(self.text_score[t])
            rel = [1.0, 1.0, 1.0]
            if how.unreliable:
                for m in (1, 2):
                    if rng.random() < how.unreliable:
                        rel[m] = float(rng.uniform(0.25, 0.7))
                        if m == 1:
                            ca = int(rng.integers(3))
                        else:
                            cv = int(rng.integers(3))
            a = int(rng.choice(self._by_class["audio"][ca]))
            f = int(rng.choice(self._by_class["face"][cv]))
            w = int(rng.integers(len(self.audio_windows[a])))
            views = rng.integers(0, FACE_VIEWS, VISION_FRAMES)
            specs.append(WindowSpec(t, a, w, f, views, c, score, int(self.text_cls[t]), ca, cv, tuple(rel)))
        return specs

    def text_tokens(self, t: int, variant: int = 0) -> tuple[np.ndarray, float]:
        """Token features of text row t (variant 0 clean, k > 0 a cached dropped copy) and
        the share of word pieces dropped."""
        corpus, row = self.text_rows[t][:2]
        if variant == 0 or corpus not in self.text_variants[variant - 1]:
            return self.text_feats[corpus][row], 0.0
        feats, where, rates = self.text_variants[variant - 1][corpus]
        i = where[row]
        return feats[i], float(rates[i])

    def text_at_rate(self, specs: list[WindowSpec], rate: float, seed: int) -> list[np.ndarray]:
        """Token features of the windows' texts with word pieces dropped at ``rate`` (seeded)."""
        from models.training.feature_cache import text_features_at_rate

        tables = {}
        for corpus in sorted({self.text_rows[s.text][0] for s in specs}):
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
    ) -> tuple[StackBatch, np.ndarray]:
        """Padded batch for ``UnimodalStack`` and the text missing rate of each window.

        rates [B, 3]: per-modality step drop rates. Text drops come from cached [UNK]
        copies in training (any rate > 0 picks one; ``augment``), or from ``text_override``
        (features already computed at the wanted rate) in testing.
        presence [B, 3] bool: whole modalities present.
        """
        texts, audios, visions, text_rate = [], [], [], []
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
                if (corpus, variant) not in self.encoded:
                    variant = 0  # no dropped copies of this corpus
                rag, where, sc, lg = self.encoded[corpus, variant]
                j = where[row]
                tok, t_score[i], t_logits[i] = rag[j], sc[j], lg[j]
                tr = 0.0 if variant == 0 else self.text_tokens(s.text, variant)[1]
            else:
                tok, tr = self.text_tokens(s.text, variant)
            texts.append(tok if presence[i, 0] else None)
            text_rate.append(tr if presence[i, 0] else 1.0)

            seg = self.audio_windows[s.audio][s.audio_window]
            if augment and self.audio_variants and rng.random() < 2 / 3:
                wins = self.audio_variants[int(rng.integers(0, len(self.audio_variants)))][s.audio]
                seg = wins[int(rng.integers(len(wins)))]
            a_valid = drop_steps(np.ones(len(seg), bool), rates[i, 1], rng)
            audios.append((seg, a_valid) if presence[i, 1] else None)

            frames = self.face_views[s.face, s.views]
            v_valid = drop_steps(np.ones(len(frames), bool), rates[i, 2], rng)
            visions.append((frames, v_valid) if presence[i, 2] else None)

        batch = stack_batch(
            texts,
            audios,
            visions,
            present=presence,
            reliability=[s.reliability for s in specs],
            text_encoded=(t_score, t_logits) if use_cache else None,
        )
        return batch, np.array(text_rate, np.float32)
