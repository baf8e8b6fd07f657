"""Files: ``FileReplay`` replays a video or audio file as if it were live (or as fast as
possible); ``decode_audio``, ``read_media``, ``media_duration`` and ``write_media`` are
whole-file helpers for tests, the simulator and the UI."""

from __future__ import annotations

import heapq
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from models.features.audio import SAMPLE_RATE, to_mono_16k
from models.features.vision import validate_frame
from streaming.sources.base import AUDIO_SUFFIXES, CHUNK_S, Clock, Item, Sink, SourceError, Worker, check_t, log
from streaming.types import AudioChunk, VideoFrame


def _decode_ffmpeg(path: Path) -> np.ndarray | None:
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-",
        ],
        capture_output=True,
    )
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        if "matches no streams" in err:
            return None
        raise SourceError(f"cannot decode audio of {path}: {err.splitlines()[-1] if err else 'ffmpeg failed'}")
    if not proc.stdout:
        return None
    return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0


def _decode_soundfile(path: Path) -> np.ndarray:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise SourceError(f"cannot decode audio of {path}: {e} (install ffmpeg for more formats)") from e
    try:
        return to_mono_16k(data, int(rate))
    except ValueError as e:
        raise SourceError(f"cannot decode audio of {path}: {e}") from e


def decode_audio(path: str | Path) -> np.ndarray | None:
    """The whole audio track of a file as float32 mono 16 kHz; None when it has no audio
    stream. ffmpeg when installed, else soundfile (wav/flac/ogg). SourceError when undecodable."""
    path = Path(path)
    if shutil.which("ffmpeg"):
        return _decode_ffmpeg(path)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise SourceError(f"cannot decode audio of {path}: ffmpeg not found (apt install ffmpeg)")
    return _decode_soundfile(path)


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
    replays in no time, deterministically."""

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
    ) -> None:
        super().__init__(sink, on_error)
        self._pace_clock: Clock = clock or time.monotonic
        self._wait: Callable[[float], bool] = wait or self._stop.wait
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"media file not found: {self.path}")
        if speed <= 0 or (fps is not None and fps <= 0) or chunk_s <= 0:
            raise ValueError("speed, fps and chunk_s must be positive")
        self.realtime, self.speed, self.fps, self.loop = realtime, float(speed), fps, loop
        self.t0, self.chunk_s = check_t(t0), chunk_s
        self.done = False
        self.has_video, self.native_fps, self.n_frames = False, 0.0, 0
        if video and self.path.suffix.lower() not in AUDIO_SUFFIXES:
            self._probe_video()
        self.audio: np.ndarray | None = None
        if audio:
            try:
                self.audio = decode_audio(self.path)
            except SourceError as e:
                if not self.has_video:
                    raise
                log.warning("%s; replaying video only", e)
        if not self.has_video and self.audio is None:
            raise SourceError(
                f"no readable {'video or audio' if video and audio else 'video' if video else 'audio'} in {self.path}"
            )

    def _probe_video(self) -> None:
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened() or not cap.read()[0]:
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.native_fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
            self.n_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            self.has_video = True
        finally:
            cap.release()

    @property
    def duration(self) -> float:
        """Seconds of media (the longer of video and audio; video from its frame count)."""
        v = self.n_frames / self.native_fps if self.has_video else 0.0
        a = len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0
        return max(v, a)

    def _frames(self, offset: float, end: list[float]) -> Iterator[VideoFrame]:
        cap = cv2.VideoCapture(str(self.path))
        period = 1.0 / self.fps if self.fps else 0.0
        next_due, i = 0.0, 0
        try:
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    break
                t = i / self.native_fps
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
                yield item
            span = max(end[0], len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0)
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
