"""Loaders and the emotion mapping."""

import numpy as np
import pytest

from models.labels import (
    EMOTION_TO_SENTIMENT,
    EMOTIONS,
    FER_EMOTIONS,
    sentiment_index,
    sentiment_matrix,
)
from models.training.data import (
    SPLITS,
    TEXT_CORPORA,
    load_faces,
    load_speech,
    load_text,
)


@pytest.mark.parametrize("name", TEXT_CORPORA)
def test_text_corpora(name):
    df = load_text(name)
    assert set(df["split"]) == set(SPLITS)
    assert (df["text"].str.len() > 0).mean() > 0.99
    assert df["cls"].isin([0, 1, 2]).all()
    if name != "meld":
        assert df["score"].between(-3, 3).all()
    if name == "mosi":
        assert df["split"].value_counts().to_dict() == {"train": 1284, "test": 686, "valid": 229}


def test_speech_split_by_speaker():
    df = load_speech()
    for corpus in ("ravdess", "emodb"):
        d = df[df.corpus == corpus]
        speakers = [set(d[d.split == s].speaker) for s in SPLITS]
        assert (
            all(speakers)
            and not (speakers[0] & speakers[1])
            and not (speakers[0] & speakers[2])
            and not (speakers[1] & speakers[2])
        )
    assert len(df[df.corpus == "ravdess"]) == 1200 and df.emotion.isin(EMOTIONS).all()


def test_fer_valid_is_a_stratified_holdout():
    train, valid, test = load_faces("train"), load_faces("valid"), load_faces("test")
    assert len(train) + len(valid) == 28709 and len(test) == 3587
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (48, 48)
    share = np.bincount(valid.emotion_idx, minlength=9) / np.maximum(np.bincount(train.emotion_idx, minlength=9), 1)
    present = np.bincount(train.emotion_idx, minlength=9) > 0
    assert np.allclose(share[present], 0.05 / 0.95, atol=0.01)
    assert set(EMOTIONS[e] for e in test.emotion_idx) == set(FER_EMOTIONS)


def test_emotion_mapping():
    assert EMOTION_TO_SENTIMENT["happy"] == "positive" and EMOTION_TO_SENTIMENT["calm"] == "neutral"
    assert sentiment_index("surprised") == -1 and sentiment_index("sad") == 0
    m = sentiment_matrix(EMOTIONS)
    assert np.allclose(m.sum(1), 1)
    assert np.allclose(m[EMOTIONS.index("surprised")], 1 / 3)
