"""The "One window" tab's analysis: a transcript, a recording and a face picture, each
possibly missing or unreadable, analysed as one window (``WindowAnalyser``)."""

from __future__ import annotations

import os

import numpy as np

from models.types import Modality, WindowFeatures

MAX_AUDIO_SECONDS = 30.0


def _read_audio_payload(audio) -> np.ndarray:
    """float32 mono 16 kHz samples of what the page sent: a ``(rate, samples)`` tuple, a file
    path or Gradio's FileData dict. ValueError with a message for the page when unreadable."""
    from models.features.audio import to_mono_16k
    from streaming.sources import SourceError, decode_audio

    if isinstance(audio, tuple):
        rate, samples = audio
        return to_mono_16k(np.asarray(samples), int(rate))
    path = audio.get("path") if isinstance(audio, dict) else audio
    if not path or not os.path.isfile(str(path)):
        raise ValueError("the recording did not arrive")
    name = (audio.get("orig_name") if isinstance(audio, dict) else None) or os.path.basename(str(path))
    if os.path.getsize(str(path)) == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    try:
        x = decode_audio(str(path))
    except SourceError as e:
        raise ValueError(f"{name} could not be read as audio ({str(e).rsplit(': ', 1)[-1]})") from None
    if x is None or not len(x):
        raise ValueError(f"{name} holds no audio")
    return x


def _read_image_payload(image) -> np.ndarray:
    """RGB uint8 of what the page sent: an array, a file path, a data: URL or Gradio's
    ImageData dict. ValueError with a message for the page when unreadable."""
    import base64

    import cv2

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, dict):
        url, path, name = image.get("url") or "", image.get("path"), image.get("orig_name")
    else:
        url, path, name = "", image, None
    if url.startswith("data:"):
        try:
            data = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
        except Exception:  # any malformed data URL
            raise ValueError("the picture could not be read (a malformed data URL)") from None
    elif path and os.path.isfile(str(path)):
        data = np.fromfile(str(path), np.uint8)
        name = name or os.path.basename(str(path))
    else:
        raise ValueError("the picture did not arrive")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ValueError(f"{name or 'the picture'} could not be read as an image" + (" (0 bytes)" if not data.size else ""))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def emotion_summary(detail: dict[str, float], top: int = 3) -> str:
    """An estimate's emotions grouped by the sentiment they count for, so the label can be
    read off them: "negative 0.55 (sad 0.30, angry 0.25) · positive 0.40 (happy 0.40)"."""
    from models.labels import EMOTION_TO_SENTIMENT

    groups: dict[str, list[tuple[str, float]]] = {}
    for e, p in detail.items():
        groups.setdefault(EMOTION_TO_SENTIMENT.get(e) or "other", []).append((e, p))
    parts = []
    for g, items in sorted(groups.items(), key=lambda kv: -sum(p for _, p in kv[1])):
        items = sorted(items, key=lambda kv: -kv[1])
        inner = ", ".join(f"{e} {p:.2f}" for e, p in items[:top])
        parts.append(f"{g} {sum(p for _, p in items):.2f} ({inner})")
    return " · ".join(parts)


class WindowAnalyser:
    """Turns the raw inputs of one window into a result table (used by the UI and tests).

    Call with a transcript, a recording and a face picture, each possibly None; the recording
    and the picture may be arrays (``(rate, samples)``, RGB) or what the page uploads (file
    paths, FileData dicts). An input that cannot be used is left out with a note saying why,
    and the rest is still analysed."""

    def __init__(self, model=None):
        from models.features.vision import FaceAnalyzer
        from models.runtime import SentimentModel

        self.model = model or SentimentModel.load()
        self.faces = FaceAnalyzer(static=True)

    def _text_note(self, text: str) -> str | None:
        """A note when the text model reads only the start of ``text``."""
        read = self.model.text_read(text)
        if read >= len(text):
            return None
        return (
            f"text: only the first {read:,} of {len(text):,} characters were read (the text model reads "
            f'{self.model.text_limit} word pieces, about one window\'s words), up to "…{text[max(0, read - 30) : read]}"'
        )

    def features(self, text: str | None, audio, image) -> tuple[WindowFeatures, list[str]]:
        """(features, notes on what was left out and why)."""
        from models.features.audio import SAMPLE_RATE

        notes = []
        text = text if isinstance(text, str) else ""
        t = self.model.text_features(text)
        if t is None:
            notes.append("text: none given")
        else:
            note = self._text_note(text)
            if note:
                notes.append(note)
        a = None
        if audio is not None:
            try:
                x = _read_audio_payload(audio)
                if len(x) > MAX_AUDIO_SECONDS * SAMPLE_RATE:
                    notes.append(f"audio: {len(x) / SAMPLE_RATE:.0f} s given, the last {MAX_AUDIO_SECONDS:.0f} s read")
                    x = x[-int(MAX_AUDIO_SECONDS * SAMPLE_RATE) :]
                if np.sqrt(np.mean(x.astype(np.float64) ** 2)) < 1e-3:
                    notes.append("audio: silent, left out")
                else:
                    a = self.model.audio_features(x)
            except ValueError as e:
                notes.append(f"audio: {e}; left out")
        else:
            notes.append("audio: none given")
        v = None
        if image is not None:
            try:
                obs = self.faces(_read_image_payload(image))
                if obs.has_face:
                    v = self.model.face_features([obs.crop])
                    if obs.n_faces > 1:
                        notes.append(f"vision: {obs.n_faces} faces, the largest is read")
                else:
                    notes.append("vision: no face found")
            except ValueError as e:
                notes.append(f"vision: {e}; left out")
        else:
            notes.append("vision: none given")
        return WindowFeatures(t, a, v), notes

    def __call__(self, text, audio, image):
        feats, notes = self.features(text, audio, image)
        r = self.model.predict(feats)
        rows = []
        for m in (Modality.TEXT, Modality.AUDIO, Modality.VISION):
            e = r.per_modality.get(m)
            if e is None:
                rows.append([m.value, "absent", "", "", ""])
            else:
                conf = f"{e.confidence:.2f}" + ("" if e.in_domain >= 0.995 else f" (in-domain {e.in_domain:.2f})")
                rows.append([m.value, e.label, f"{e.score:+.2f}", conf, emotion_summary(e.detail)])
        if not r.used:
            summary = "**no data**: no modality could be read, so there is no estimate"
            conf = None
        else:
            summary = (
                f"**{r.label}** (score {r.score:+.2f} on -3..3, confidence {r.confidence:.2f}); "
                f"modalities used: {', '.join(m.value for m in r.used)}"
            )
            conf = r.confidences()
        if notes:
            summary += "  \n" + "; ".join(notes)
        return conf, summary, rows
