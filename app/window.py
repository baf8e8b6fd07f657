"""The "One window" tab's analysis: a transcript, a recording and a face picture, each
possibly missing or unreadable, analysed as one window (``WindowAnalyser``)."""

from __future__ import annotations

import os
import unicodedata

import numpy as np

from models.types import Modality, WindowFeatures
from streaming.limits import MAX_DECODE_SIDE, MAX_FRAME_SIDE, MAX_RECORDING_S, MAX_TEXT_CHARS, MAX_WINDOW_AUDIO_S


def _payload_path(payload) -> tuple[str | None, str | None]:
    """(path, name to show) of an upload as the page sends it: a file path, or Gradio's
    FileData dict (``path``, ``orig_name``); (None, None) for anything else."""
    if isinstance(payload, dict):
        path, name = payload.get("path"), payload.get("orig_name")
    else:
        path, name = payload, None
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\x00" in str(path):
        return None, None
    path = str(path)
    if not isinstance(name, str) or not name.strip():
        name = os.path.basename(path)
    # shown on the page: no control or format characters (a right-to-left override would
    # make "x\u202e4pm.exe" read "xexe.mp4"), at most 100 characters
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip() or "the upload"
    return path, name[:100]


def _read_audio_payload(audio) -> np.ndarray:
    """float32 mono 16 kHz samples of what the page sent: a ``(rate, samples)`` tuple, a file
    path or Gradio's FileData dict. ValueError with a message for the page when unreadable,
    or when the recording's header claims, or its audio runs, past ``MAX_RECORDING_S`` (only
    that much is ever decoded)."""
    from models.features.audio import to_mono_16k
    from streaming.sources import SourceError, decode_audio
    from streaming.sources.files import check_recording

    if isinstance(audio, tuple):
        if len(audio) != 2:
            raise ValueError("the recording must be a (rate, samples) pair")
        rate, samples = audio
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
            raise ValueError(f"the recording's sample rate must be an integer, got {type(rate).__name__}")
        try:
            samples = np.asarray(samples)
        except (TypeError, ValueError):
            raise ValueError("the recording's samples are not an array of numbers") from None
        return to_mono_16k(samples, rate)
    path, name = _payload_path(audio)
    if path is None or not os.path.isfile(path):
        raise ValueError("the recording did not arrive")
    try:
        check_recording(path, video=False)
        x = decode_audio(path, MAX_RECORDING_S)
    except SourceError as e:
        reason = str(e)
        if reason.startswith("cannot decode"):
            reason = f"{name} could not be read as audio ({reason.rsplit(': ', 1)[-1]})"
        raise ValueError(reason.replace(os.path.basename(path), name)) from None
    if x is None or not len(x):
        raise ValueError(f"{name} holds no audio")
    return x


def _read_image_payload(image) -> np.ndarray:
    """RGB uint8 of what the page sent: an array, a file path, a data: URL or Gradio's
    ImageData dict. A picture larger than ``MAX_FRAME_SIDE`` on a side is decoded at half its
    size (a JPEG decodes so directly; the face analyser fits what is left); one larger than
    ``MAX_DECODE_SIDE`` is refused from its header, before it is decoded.
    ValueError with a message for the page when unreadable."""
    import base64
    import binascii

    import cv2

    if isinstance(image, np.ndarray):
        return image
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and url.startswith("data:"):
        name = "the picture"
        try:
            data = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
        except (IndexError, ValueError, binascii.Error):  # any malformed data URL
            raise ValueError("the picture could not be read (a malformed data URL)") from None
    else:
        path, name = _payload_path(image)
        if path is None or not os.path.isfile(path):
            raise ValueError("the picture did not arrive")
        data = np.fromfile(path, np.uint8)
    if not data.size:
        raise ValueError(f"{name} could not be read as an image (0 bytes)")
    w, h = _picture_size(data, name)
    if max(w, h) > MAX_DECODE_SIDE:
        raise ValueError(f"{name} is {w}x{h} pixels, larger than the {MAX_DECODE_SIDE} a side a picture may have")
    # a larger picture is decoded at half its size (a JPEG decodes so directly), then fits
    flags = cv2.IMREAD_REDUCED_COLOR_2 if max(w, h) > MAX_FRAME_SIDE else cv2.IMREAD_COLOR
    try:
        bgr = cv2.imdecode(data, flags)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"{name} could not be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _picture_size(data: np.ndarray, name: str) -> tuple[int, int]:
    """(width, height) a picture's header declares, read without decoding it (Pillow reads
    headers only). ValueError, naming the picture, when Pillow finds no picture it knows
    (OpenCV might decode a few formats more, but without a size known first a compressed
    one could unpack to gigabytes) or judges it a decompression bomb."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: judged by the caller
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        raise ValueError(f"{name} is larger than the {MAX_DECODE_SIDE} pixels a side a picture may have") from None
    except Exception:  # not a format Pillow knows, or a broken header
        raise ValueError(f"{name} could not be read as an image") from None


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

    def _text_note(self, text: str, given: int | None = None) -> str | None:
        """A note when the text model reads only the start of ``text`` (``given``: how many
        characters were sent, when ``text`` is what was kept of them)."""
        from models.features.text import encodable

        read = self.model.text_read(text)
        given = len(text) if given is None else given
        if read >= given:
            return None
        # quoted as the text model read it: a lone surrogate would make the page's answer
        # unsendable (Gradio's JSON encoder refuses it)
        last = encodable(text[max(0, read - 30) : read])
        return (
            f"text: only the first {read:,} of {given:,} characters were read (the text model reads "
            f'{self.model.text_limit} word pieces, about one window\'s words), up to "…{last}"'
        )

    def features(self, text: str | None, audio, image) -> tuple[WindowFeatures, list[str]]:
        """(features, notes on what was left out and why)."""
        from models.features.audio import SAMPLE_RATE

        notes = []
        text = text if isinstance(text, str) else ""
        given = len(text)
        if given > MAX_TEXT_CHARS:
            notes.append(f"text: {given:,} characters given, cut to the first {MAX_TEXT_CHARS:,}")
            text = text[:MAX_TEXT_CHARS]
        t = self.model.text_features(text)
        if t is None:
            notes.append("text: none given")
        else:
            note = self._text_note(text, given)
            if note:
                notes.append(note)
        a = None
        if audio is not None:
            try:
                x = _read_audio_payload(audio)
                if len(x) > MAX_WINDOW_AUDIO_S * SAMPLE_RATE:
                    notes.append(f"audio: {len(x) / SAMPLE_RATE:.0f} s given, the last {MAX_WINDOW_AUDIO_S:.0f} s read")
                    x = x[-int(MAX_WINDOW_AUDIO_S * SAMPLE_RATE) :]
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
