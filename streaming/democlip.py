"""Builds a demo recording at run time from real data: FER-2013 test faces animated into a
video (small head motion, lighting drift and camera noise) and sentences spoken by espeak-ng,
each face matching its sentence's sentiment. Nothing of the data set is shipped; tests, the
simulator demo and the UI's "demo clip" button call this.

    python -m streaming.democlip OUT.mp4 [--seconds-per-line 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from models.features.audio import SAMPLE_RATE, to_mono_16k

FPS = 15
#: (sentence, FER-2013 emotion of the face shown while it is spoken)
SCRIPT = (
    ("i am so happy today, this is a wonderful day", "happy"),
    ("this is terrible, i really hate the way it went", "angry"),
    ("the meeting is at ten in the morning", "neutral"),
    ("i love this movie, the acting was great", "happy"),
    ("it was a sad and boring story", "sad"),
)
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def line_sentiment(emotion: str) -> str:
    """The sentiment class a script line stands for (its face's emotion mapped as the
    models map it: ``models.labels``)."""
    from models.labels import sentiment_index
    from models.types import SENTIMENT_CLASSES

    return SENTIMENT_CLASSES[sentiment_index(emotion)]


def speak(text: str, rate_wpm: int = 150, voice: str = "en-us") -> np.ndarray:
    """float32 16 kHz speech of ``text`` by espeak-ng (RuntimeError when it is missing)."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(rate_wpm), "-w", str(wav), text], check=True, capture_output=True)
        a, sr = sf.read(str(wav), dtype="float32")
    return to_mono_16k(a, sr)


def pick_faces(emotions: list[str], data_root=None, seed: int = 0) -> list[np.ndarray]:
    """One FER-2013 test face (uint8 48x48) per emotion name, the same ones for a given seed,
    checked to be found by the face mesh."""
    from models.features.vision import FaceAnalyzer, fer_image_to_frame
    from models.labels import EMOTIONS
    from models.training.data import load_faces

    test = load_faces("test", data_root)
    names = np.array([EMOTIONS[i] for i in test.emotion_idx])
    rng = np.random.default_rng(seed)
    fa = FaceAnalyzer(static=True)
    out = []
    try:
        for e in emotions:
            idx = np.flatnonzero(names == e)
            for i in rng.permutation(idx)[:50]:
                if fa(fer_image_to_frame(test.images[i])).has_face:
                    out.append(test.images[i])
                    break
            else:
                raise RuntimeError(f"no {e} face found by the face mesh")
    finally:
        fa.close()
    return out


def animate(face: np.ndarray, n: int, rng: np.random.Generator, t0: int = 0) -> list[np.ndarray]:
    """n RGB frames of a 48x48 face: slow sway and nod, lighting drift, camera noise."""
    from models.features.vision import fer_image_to_frame

    base = fer_image_to_frame(face).astype(np.float32)
    h, w = base.shape[:2]
    frames = []
    for k in range(n):
        s = (t0 + k) / FPS
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 3 * np.sin(0.9 * s), 1 + 0.02 * np.sin(0.6 * s))
        m[:, 2] += (4 * np.sin(0.7 * s), 3 * np.sin(1.1 * s))
        f = cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        f = f * (1 + 0.05 * np.sin(0.3 * s)) + rng.normal(0, 2.0, f.shape)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def build_clip(path: str | Path, script=SCRIPT, seconds_per_line: float = 4.0, data_root=None, seed: int = 0) -> dict:
    """Writes the clip; returns {"path", "duration", "lines": [(start, end, text, emotion)]}."""
    from streaming.sources import write_media

    rng = np.random.default_rng(seed)
    faces = pick_faces([e for _, e in script], data_root, seed)
    per = int(seconds_per_line * SAMPLE_RATE)
    audio, frames, lines = [], [], []
    for k, ((text, emotion), face) in enumerate(zip(script, faces)):
        speech = speak(text)[: per - SAMPLE_RATE // 4]
        lead = SAMPLE_RATE // 4
        seg = np.zeros(per, np.float32)
        seg[lead : lead + len(speech)] = speech
        seg += rng.normal(0, 3e-4, per).astype(np.float32)  # a microphone's floor, not digital silence
        audio.append(seg)
        n = int(round(seconds_per_line * FPS))
        frames += animate(face, n, rng, t0=len(frames))
        start = k * seconds_per_line
        lines.append((start + lead / SAMPLE_RATE, start + (lead + len(speech)) / SAMPLE_RATE, text, emotion))
    write_media(path, frames, FPS, np.concatenate(audio))
    return {"path": str(path), "duration": len(script) * seconds_per_line, "lines": lines}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output .mp4")
    ap.add_argument("--seconds-per-line", type=float, default=4.0)
    ap.add_argument("--data", help="data root (default ../shared/data)")
    args = ap.parse_args(argv)
    info = build_clip(args.out, seconds_per_line=args.seconds_per_line, data_root=args.data)
    print(f"wrote {info['path']} ({info['duration']:.0f} s)")
    for a, b, text, emo in info["lines"]:
        print(f"  {a:5.1f}-{b:5.1f} s  [{emo}] {text}")


if __name__ == "__main__":
    main()
