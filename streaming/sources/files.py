"""Files: ``FileReplay`` replays a video or audio file as if it were live (or as fast as
possible); ``decode_audio``, ``read_media``, ``media_duration`` and ``write_media`` are
whole-file helpers for tests, the simulator and the UI."""

from __future__ import annotations

import heapq
import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.features.audio import SAMPLE_RATE, to_mono_16k
from models.features.vision import validate_frame
from streaming.limits import MAX_DECODE_S, MAX_FRAME_SIDE, MAX_RECORDING_S
from streaming.sources.base import AUDIO_SUFFIXES, CHUNK_S, Clock, Item, Sink, SourceError, Worker, check_t, log
from streaming.types import AudioChunk, VideoFrame

_SLACK_S = 0.25  # audio this much past a length limit still counts as within it (rounding)


class LimitError(SourceError):
    """An upload over one of the app's limits (``streaming.limits``); the message, naming
    the file and the limit, is meant for the page."""


@dataclass(frozen=True)
class MediaInfo:
    """What a file's header says (``probe_media``)."""

    #: seconds the header claims: the longest of the container's and its streams' durations
    #: (None: it says none, as a stream written to a pipe does)
    duration: float | None
    #: the first video stream's frame size in pixels (0, 0 without one; a cover picture
    #: attached to an audio file does not count)
    width: int = 0
    height: int = 0


def _ffmpeg_reason(err: str, path: Path) -> str:
    """The last line ffmpeg or ffprobe wrote to stderr, with the file's path (a temporary
    one, for an upload) taken out: the reason to show on the page."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if not lines:
        return "ffmpeg failed"
    line = lines[-1]
    for p in (str(path), str(path.resolve())):
        line = line.replace(f"{p}: ", "").replace(p, path.name)
    return line[:200]


def _run_limited(cmd: list[str], path: Path, timeout: float | None) -> subprocess.CompletedProcess:
    """``cmd`` (ffmpeg or ffprobe on ``path``) run to its end or for at most ``timeout``
    seconds; SourceError when it is stopped there (a decoder stuck on a crafted file)."""
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SourceError(f"cannot decode {path.name}: reading it took over {timeout:.0f} s") from None


def probe_media(path: str | Path, timeout: float | None = MAX_DECODE_S) -> MediaInfo | None:
    """What the header of the file at ``path`` says (``MediaInfo``), read by ffprobe in a
    child process (a crafted file's huge frame is decoded there, never in the server, and
    for at most ``timeout`` seconds); None when ffprobe is not installed. SourceError, with
    ffprobe's reason, for a file it cannot read."""
    path = Path(path)
    if not shutil.which("ffprobe"):
        return None
    entries = "format=duration:stream=codec_type,width,height,duration:stream_disposition=attached_pic"
    cmd = ["ffprobe", "-v", "error", "-of", "json", "-show_entries", entries, str(path)]
    proc = _run_limited(cmd, path, timeout)
    if proc.returncode != 0:
        raise SourceError(f"cannot decode {path.name}: {_ffmpeg_reason(proc.stderr.decode(errors='replace'), path)}")
    try:
        info = json.loads(proc.stdout.decode(errors="replace") or "{}")
    except ValueError:
        info = {}

    def seconds(d: dict) -> float | None:
        try:
            x = float(d.get("duration"))
        except (TypeError, ValueError):
            return None
        return x if math.isfinite(x) and x >= 0 else None

    streams = [d for d in info.get("streams") or [] if isinstance(d, dict)]
    found = [x for x in [seconds(info.get("format") or {}), *map(seconds, streams)] if x is not None]
    video = [d for d in streams if d.get("codec_type") == "video" and not (d.get("disposition") or {}).get("attached_pic")]
    w, h = (int(video[0].get("width") or 0), int(video[0].get("height") or 0)) if video else (0, 0)
    return MediaInfo(max(found) if found else None, w, h)


def check_recording(path: str | Path, video: bool = True, max_s: float = MAX_RECORDING_S) -> MediaInfo | None:
    """The header of an upload checked against the app's limits before anything of it is
    decoded: SourceError (a message for the page, naming the file, never its folder) for an
    empty file or one ffprobe cannot read; LimitError for one whose header claims more than
    ``max_s`` seconds, or (with ``video``: its frames will be read) frames larger than
    ``MAX_FRAME_SIDE`` on a side. Returns the ``MediaInfo`` (None without ffprobe)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise SourceError(f"{path.name} is empty (0 bytes)")
    info = probe_media(path)
    if info is None:
        return None
    if info.duration is not None and info.duration > max_s:
        raise LimitError(
            f"{path.name} lasts {_clock(info.duration)} by its header, longer than the {_clock(max_s)} a recording may last"
        )
    if video and max(info.width, info.height) > MAX_FRAME_SIDE:
        raise LimitError(
            f"{path.name} has frames of {info.width}x{info.height} pixels, larger than the {MAX_FRAME_SIDE} a side "
            "a recording may have"
        )
    return info


def _clock(seconds: float) -> str:
    """Seconds as h:mm:ss (or m:ss under an hour)."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _read_capped(cmd: list[str], path: Path, max_bytes: int) -> tuple[bytes, str, int]:
    """(stdout, stderr, return code) of ``cmd`` (ffmpeg decoding ``path`` to its stdout),
    its stdout read up to ``max_bytes`` + 1 bytes: a process that writes more is stopped
    there (return code 0: what it wrote is all there is to judge), so a small file that
    decodes to gigabytes never takes more memory than that, whatever its header says.
    SourceError when it runs longer than ``MAX_DECODE_S``."""
    timed_out = threading.Event()
    with tempfile.TemporaryFile() as err:  # a file: a flood of error lines never blocks ffmpeg
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(MAX_DECODE_S, stop)
        timer.start()
        try:
            out = proc.stdout.read(max_bytes + 1)
            over = len(out) > max_bytes
            if over:
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        text = err.read().decode(errors="replace")
    if timed_out.is_set():
        raise SourceError(f"cannot decode {path.name}: reading it took over {MAX_DECODE_S:.0f} s")
    return out, text, 0 if over else code


def _decode_ffmpeg(path: Path, max_s: float | None = None) -> np.ndarray | None:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0"]
    cmd += ["-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    if max_s is None:
        proc = subprocess.run(cmd, capture_output=True)
        out, err, code = proc.stdout, proc.stderr.decode(errors="replace"), proc.returncode
    else:  # a little more than the limit tells a longer recording apart
        out, err, code = _read_capped(cmd, path, 2 * int((max_s + 2 * _SLACK_S) * SAMPLE_RATE))
    err = err.strip()
    if code != 0:
        if "matches no streams" in err:
            return None
        raise SourceError(f"cannot decode audio of {path.name}: {_ffmpeg_reason(err, path)}")
    if not out:
        return None
    return np.frombuffer(out[: len(out) // 2 * 2], np.int16).astype(np.float32) / 32768.0


def _decode_soundfile(path: Path, max_s: float | None = None) -> np.ndarray:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            rate = int(f.samplerate)
            frames = -1 if max_s is None else int((max_s + 2 * _SLACK_S) * rate)
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise SourceError(f"cannot decode audio of {path.name}: {e} (install ffmpeg for more formats)") from e
    try:
        return to_mono_16k(data.mean(axis=1), rate)  # [n, channels]: any number of channels
    except ValueError as e:
        raise SourceError(f"cannot decode audio of {path.name}: {e}") from e


def decode_audio(path: str | Path, max_s: float | None = None) -> np.ndarray | None:
    """The whole audio track of a file as float32 mono 16 kHz; None when it has no audio
    stream. ffmpeg when installed, else soundfile (wav/flac/ogg). SourceError (naming the
    file, not its folder) when undecodable. With ``max_s`` (an upload) at most that many
    seconds are decoded, within ``MAX_DECODE_S``, whatever the header says: LimitError
    when the audio runs past them (a file whose header says less, or nothing)."""
    path = Path(path)
    if shutil.which("ffmpeg"):
        audio = _decode_ffmpeg(path, max_s)
    elif path.suffix.lower() not in AUDIO_SUFFIXES:
        raise SourceError(f"cannot decode audio of {path.name}: ffmpeg not found (apt install ffmpeg)")
    else:
        audio = _decode_soundfile(path, max_s)
    if max_s is not None and audio is not None and len(audio) > (max_s + _SLACK_S) * SAMPLE_RATE:
        raise LimitError(f"{path.name} runs past {_clock(max_s)}, the longest a recording may last")
    return audio


class FileReplay(Worker):
    """Replays a video or audio file as a live source: RGB frames (optionally subsampled to
    ``fps``) and 0.1 s audio chunks, merged in ``t`` order, ``t`` from ``t0``. With
    ``realtime`` items are paced against ``clock`` (``speed`` times faster), else emitted at
    once. Use ``items()`` (generator), ``run()`` (blocking, to ``sink``) or the thread
    (``start()``, ``stop()``, ``join()``, ``done``). SourceError at construction for a
    missing or unreadable file. Audio is decoded in full up front (~4 MB a minute).

    Pacing: the item at ``t`` is yielded once ``clock()`` has advanced ``(t - t0) / speed``
    seconds since ``items()`` began; until then ``wait(seconds)`` is called with the time
    still to go, and returns True to end the replay. Defaults: ``time.monotonic`` and a
    wait that ends early when stop() is called. A fake clock that ``wait`` advances
    replays in no time, deterministically.

    Limits (``limit``, on by default: a recording may be an upload; ``streaming.limits``):
    the header is checked before anything is decoded (``check_recording``: refused when it
    claims more than ``MAX_RECORDING_S`` or frames larger than ``MAX_FRAME_SIDE``); the audio
    is decoded up to ``MAX_RECORDING_S`` and refused when it runs past; frames past
    ``MAX_RECORDING_S`` are not read: the replay stops there with a LimitError saying so
    (a file whose header says less, or nothing). ``limit=False`` reads any length (local
    tools)."""

    def __init__(
        self,
        path: str | Path,
        sink: Sink | None = None,
        realtime: bool = True,
        speed: float = 1.0,
        fps: float | None = None,
        video: bool = True,
        audio: bool = True,
        loop: bool = False,
        t0: float = 0.0,
        chunk_s: float = CHUNK_S,
        on_error: Callable[[str], None] | None = None,
        clock: Clock | None = None,
        wait: Callable[[float], bool] | None = None,
        limit: bool = True,
    ) -> None:
        super().__init__(sink, on_error)
        self._pace_clock: Clock = clock or time.monotonic
        self._wait: Callable[[float], bool] = wait or self._stop.wait
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"media file not found: {self.path.name}")
        if speed <= 0 or (fps is not None and fps <= 0) or chunk_s <= 0:
            raise ValueError("speed, fps and chunk_s must be positive")
        self.realtime, self.speed, self.fps, self.loop = realtime, float(speed), fps, loop
        self.t0, self.chunk_s = check_t(t0), chunk_s
        self.limit = limit
        self.done = False
        self.has_video, self.native_fps, self.n_frames = False, 0.0, 0
        self._reached: float | None = None  # how far a replay's items reached in the file (s)
        read_video = video and self.path.suffix.lower() not in AUDIO_SUFFIXES
        if limit:
            check_recording(self.path, video=read_video)
        if read_video:
            self._probe_video()
        self.audio: np.ndarray | None = None
        if audio:
            try:
                self.audio = decode_audio(self.path, MAX_RECORDING_S if limit else None)
            except SourceError as e:
                if not self.has_video or isinstance(e, LimitError):
                    raise
                log.warning("%s; replaying video only", e)
        if not self.has_video and self.audio is None:
            raise SourceError(
                f"no readable {'video or audio' if video and audio else 'video' if video else 'audio'} in {self.path.name}"
            )

    def _probe_video(self) -> None:
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                return
            w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            if self.limit and math.isfinite(w + h) and max(w, h) > MAX_FRAME_SIDE:  # where ffprobe is missing
                raise LimitError(
                    f"{self.path.name} has frames of {w:.0f}x{h:.0f} pixels, larger than the {MAX_FRAME_SIDE} a side "
                    "a recording may have"
                )
            if not cap.read()[0]:
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.native_fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.n_frames = int(count) if math.isfinite(count) and 0 < count < 1e9 else 0
            self.has_video = True
        finally:
            cap.release()

    @property
    def duration(self) -> float:
        """Seconds of media: once a replay has read the file (``items``, to its end or until it
        stopped), how far its frames and audio really reached; before, what the file says
        (the longer of video and audio; video from its frame count, which a header can
        misstate)."""
        if self._reached is not None:
            return self._reached
        v = self.n_frames / self.native_fps if self.has_video else 0.0
        a = len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0
        return max(v, a)

    def _frames(self, offset: float, end: list[float]) -> Iterator[VideoFrame]:
        cap = cv2.VideoCapture(str(self.path))
        period = 1.0 / self.fps if self.fps else 0.0
        next_due, i = 0.0, 0
        try:
            while not self._stop.is_set():
                t = i / self.native_fps
                if self.limit and t >= MAX_RECORDING_S:
                    if cap.grab():  # a frame past the limit: the file runs on (its header said less)
                        raise LimitError(
                            f"{self.path.name} runs past {_clock(MAX_RECORDING_S)}, the longest a recording may last"
                        )
                    break
                ok, bgr = cap.read()
                if not ok:
                    break
                i += 1
                end[0] = t + 1.0 / self.native_fps
                if period:
                    if t + 1e-6 < next_due:
                        continue
                    next_due = max(next_due + period, t)
                frame = self._frame(offset + t, bgr, f"{self.path}: frame {i - 1}")
                if frame is not None:
                    yield frame
        finally:
            cap.release()

    def _chunks(self, offset: float) -> Iterator[AudioChunk]:
        step = max(1, int(round(self.chunk_s * SAMPLE_RATE)))
        for s in range(0, len(self.audio), step):
            yield AudioChunk(offset + s / SAMPLE_RATE, self.audio[s : s + step].copy(), SAMPLE_RATE)

    def items(self) -> Iterator[Item]:
        """Yield every item in ``t`` order (paced on ``clock`` when ``realtime``); ends at the
        end of the file (never with ``loop``), when stop() is called or ``wait`` returns True."""
        clock = self._pace_clock
        offset, start = self.t0, clock()
        while True:
            end = [0.0]
            streams: list[Iterator[Item]] = []
            if self.has_video:
                streams.append(self._frames(offset, end))
            if self.audio is not None:
                streams.append(self._chunks(offset))
            for item in heapq.merge(*streams, key=lambda it: it.t):
                if self._stop.is_set():
                    return
                if self.realtime:
                    delay = (item.t - self.t0) / self.speed - (clock() - start)
                    if delay > 0 and self._wait(delay):
                        return
                self._reached = max(
                    self._reached or 0.0,
                    item.t - offset + (item.duration if isinstance(item, AudioChunk) else 1.0 / self.native_fps),
                )
                yield item
            span = max(end[0], len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0)
            self._reached = span
            if not self.loop or self._stop.is_set() or span <= 0:
                return
            offset += span

    def run(self) -> None:
        """Blocking: emit every item to ``sink``; returns when the file ends or stop() is called."""
        self._stop.clear()
        self.done = False
        try:
            for item in self.items():
                if self.sink is not None:
                    self.sink(item)
        finally:
            self.done = True

    def start(self) -> FileReplay:
        """Run in a daemon thread; errors set ``.error`` and call ``on_error``."""
        if self.running:
            return self
        self.error, self.done = None, False
        self._spawn(self._run_safe, f"replay-{self.path.name}")
        return self

    def _run_safe(self) -> None:
        try:
            self._stop.clear()
            for item in self.items():
                self._emit(item)
        except Exception as e:
            self._fail(f"replay of {self.path} failed: {e}")
        finally:
            self.done = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the replay thread; True when it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done


def read_media(path: str | Path, fps: float | None = None) -> tuple[list[VideoFrame], np.ndarray | None]:
    """All frames of a file (subsampled to ``fps`` if given) and its whole float32 16 kHz
    mono audio (None without an audio track). SourceError when unreadable."""
    replay = FileReplay(path, realtime=False, fps=fps)
    frames = [it for it in replay.items() if isinstance(it, VideoFrame)] if replay.has_video else []
    return frames, replay.audio


def media_duration(path: str | Path) -> float:
    """Seconds of media in a file (the longer of its video and audio tracks)."""
    return FileReplay(path, realtime=False).duration


def write_media(path: str | Path, frames: Sequence[np.ndarray], fps: float, audio_16k: np.ndarray | None = None) -> Path:
    """Write RGB uint8 frames (all one size) at ``fps`` as an mp4: H.264 (yuv420p, an odd
    size padded by one pixel) so that browsers play it, with ``audio_16k`` (float32 mono
    16 kHz) muxed in as AAC by ffmpeg. Without ffmpeg the video (MPEG-4 Part 2) is written
    alone and the audio next to it as ``<path>.wav``. With no frames, writes the audio alone
    (wav/flac by soundfile, other formats by ffmpeg). Returns ``path``."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = None if audio_16k is None else np.clip(np.asarray(audio_16k, np.float32).reshape(-1), -1, 1)
    ffmpeg = shutil.which("ffmpeg")
    if not frames:
        if audio is None:
            raise ValueError("nothing to write: no frames and no audio")
        if path.suffix.lower() in {".wav", ".flac"} or not ffmpeg:
            sf.write(str(path), audio, SAMPLE_RATE)
            return path
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        if audio is not None:
            sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
        if not frames:
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(path)]
        else:
            h, w = frames[0].shape[:2]
            silent = Path(tmp) / "v.mp4"
            writer = cv2.VideoWriter(str(silent), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not writer.isOpened():
                raise SourceError(f"cannot write video {path}: no mp4v encoder")
            try:
                for i, f in enumerate(frames):
                    f = validate_frame(f)
                    if f.shape[:2] != (h, w):
                        raise ValueError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, frame 0 is {w}x{h}")
                    writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            finally:
                writer.release()
            if not ffmpeg:
                shutil.move(str(silent), path)
                if audio is not None:
                    sf.write(str(path.with_suffix(".wav")), audio, SAMPLE_RATE)
                return path
            # H.264 + yuv420p so that browsers can play it; MPEG-4 Part 2 where no libx264
            streams = ["-i", str(silent)]
            if audio is not None:
                streams += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac"]
            h264 = [
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-movflags",
                "+faststart",
            ]
            base = ["ffmpeg", "-nostdin", "-v", "error", "-y", *streams]
            if subprocess.run([*base, *h264, str(path)], capture_output=True).returncode == 0:
                return path
            cmd = [*base, "-c:v", "copy", str(path)]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise SourceError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace').strip()}")
    return path
