"""Emotion classes and the one emotion-to-sentiment mapping of the project.

Speech (RAVDESS, EmoDB) and face (FER-2013) corpora are labelled with emotions, the
product speaks sentiment. This module is the only place that says how one maps to the
other; the model card quotes it.

Mapping (stated in assets/MODEL_CARD.md too):
- positive: happy
- neutral:  neutral, calm
- negative: sad, angry, fearful, disgust, boredom
- ambiguous: surprised -- its probability mass is spread evenly over the three
  sentiment classes, and surprised samples are left out of mapped-sentiment accuracy
  and out of composed trimodal windows.
"""

from __future__ import annotations

import numpy as np

from models.types import SENTIMENT_CLASSES

#: Unified emotion vocabulary over all corpora.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom")

EMOTION_TO_SENTIMENT: dict[str, str | None] = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "positive",
    "sad": "negative",
    "angry": "negative",
    "fearful": "negative",
    "disgust": "negative",
    "boredom": "negative",
    "surprised": None,  # ambiguous
}

#: Emotions each corpus labels, in the corpus' own order, as names of EMOTIONS.
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
#: FER-2013 class order as stored in the npz files (angry, disgust, fear, happy, neutral, sad, surprise).
FER_EMOTIONS = ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")


def sentiment_matrix(emotions: tuple[str, ...]) -> np.ndarray:
    """[len(emotions), 3] matrix M with sentiment_probs = emotion_probs @ M."""
    m = np.zeros((len(emotions), len(SENTIMENT_CLASSES)), np.float32)
    for i, e in enumerate(emotions):
        s = EMOTION_TO_SENTIMENT[e]
        if s is None:
            m[i, :] = 1.0 / len(SENTIMENT_CLASSES)
        else:
            m[i, SENTIMENT_CLASSES.index(s)] = 1.0
    return m


def sentiment_index(emotion: str) -> int:
    """Sentiment class index of an emotion, or -1 where the mapping is ambiguous."""
    s = EMOTION_TO_SENTIMENT[emotion]
    return -1 if s is None else SENTIMENT_CLASSES.index(s)


def corpus_emotion_mask(corpus: str) -> np.ndarray:
    """bool [9] over EMOTIONS: the classes a speech corpus ("ravdess" or "emodb") labels
    (its predictions are restricted to them in training and evaluation)."""
    names = RAVDESS_EMOTIONS if corpus == "ravdess" else tuple(EMODB_EMOTIONS.values())
    return np.array([e in names for e in EMOTIONS])
