"""The fake camera and microphone files for Chromium, made from real recordings.

``make_fake_media(folder) -> (video.y4m, audio.wav)`` joins real clips of people speaking
on camera (``<data root>/real``, ``DEFAULT_CLIPS``) into one recording, written as the raw
video and sound files that Chromium's ``--use-file-for-fake-video-capture`` and
``--use-file-for-fake-audio-capture`` play (and loop); ``media_seconds`` reads their
lengths back. Needs ffmpeg. Used by ``app.browser``'s callers: the browser test, the
screenshot and the load check.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

#: close-up faces that speak throughout. The MELD clip (a small face in a wide TV shot) is
#: left out: its face is often not found, which would be a true but unwanted DEGRADED.
DEFAULT_CLIPS = (
    "ravdess_01-01-07-02-02-01-01.mp4",
    "cremad_1001_DFA_HAP_XX.flv",
    "cremad_1001_DFA_ANG_XX.flv",
    "cremad_1001_DFA_NEU_XX.flv",
    "cremad_1001_DFA_SAD_XX.flv",
    "cremad_1001_DFA_FEA_XX.flv",
    "cremad_1001_DFA_DIS_XX.flv",
)


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


def make_fake_media(
    folder,
    min_seconds: float = 20.0,
    size: tuple[int, int] = (480, 360),
    fps: int = 10,
    rate: int = 48_000,
    clips=DEFAULT_CLIPS,
    data=None,
) -> tuple[Path, Path]:
    """Writes one recording of real people speaking on camera as Chromium's fake devices.

    In: ``folder`` (created if needed) to write to; ``min_seconds``: the recording's least
    length (the clips ``clips``, file names in ``<data root>/real``, are joined in order and
    cycled until it is reached); ``size`` (width, height) and ``fps`` of the video (each clip
    is scaled to fit and padded with black); ``rate``: the sound's sample rate; ``data``: the
    data root (default ``models.paths.data_root()``).

    Out: ``(video, audio)``: ``folder/fake.y4m`` (raw YUV 4:2:0, for
    ``--use-file-for-fake-video-capture``) and ``folder/fake.wav`` (16-bit PCM mono, for
    ``--use-file-for-fake-audio-capture``). Both have exactly the same length, a whole number
    of frames, so they stay in step when Chromium loops them. The y4m is raw: 480x360 at
    10 fps is about 2.6 MB a second.
    """
    from models.paths import data_root

    real = Path(data or data_root()) / "real"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [real / c for c in clips]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"real clip {p} not found")
    chosen, total = [], 0.0
    while total < min_seconds:
        p = paths[len(chosen) % len(paths)]
        # a whole number of frames per segment: video and sound cut to the same length
        d = int(_duration(p) * fps) / fps
        chosen.append((p, d))
        total += d
    w, h = size
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for p, _ in chosen:
        cmd += ["-i", str(p)]
    parts, pads = [], []
    for i, (_, d) in enumerate(chosen):
        parts.append(
            f"[{i}:v:0]fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration=1,trim=duration={d:.6f},setpts=PTS-STARTPTS[v{i}]"
        )
        parts.append(
            f"[{i}:a:0]aresample={rate},aformat=sample_fmts=s16:channel_layouts=mono,"
            f"apad,atrim=duration={d:.6f},asetpts=PTS-STARTPTS[a{i}]"
        )
        pads.append(f"[v{i}][a{i}]")
    graph = ";".join(parts) + ";" + "".join(pads) + f"concat=n={len(chosen)}:v=1:a=1[v][a]"
    video, audio = folder / "fake.y4m", folder / "fake.wav"
    cmd += [
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "yuv4mpegpipe",
        str(video),
        "-map",
        "[a]",
        "-c:a",
        "pcm_s16le",
        "-ar",
        str(rate),
        "-ac",
        "1",
        str(audio),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    _cut_wav(audio, round(sum(d for _, d in chosen) * rate))
    return video, audio


def _cut_wav(path: Path, n: int) -> None:
    """Cuts (or pads with silence) a wav to exactly ``n`` frames (atrim may leave a few more)."""
    with wave.open(str(path)) as wf:
        params, data = wf.getparams(), wf.readframes(n)
    width = params.sampwidth * params.nchannels
    data = data + b"\0" * (n * width - len(data))
    with wave.open(str(path), "wb") as wf:
        wf.setparams(params)
        wf.writeframes(data)


def media_seconds(video, audio) -> tuple[float, float]:
    """(video, audio) lengths in seconds of a y4m file (from its header and size) and a wav."""
    with open(video, "rb") as f:
        header = f.readline().split()
    fields = {t[:1]: t[1:] for t in header[1:]}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    num, den = (int(x) for x in fields[b"F"].split(b":"))
    header_len = len(b" ".join(header)) + 1
    frames = (Path(video).stat().st_size - header_len) / (w * h * 3 // 2 + len(b"FRAME\n"))
    with wave.open(str(audio)) as wf:
        return frames * den / num, wf.getnframes() / wf.getframerate()
