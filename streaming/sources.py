"""Sources: transports that turn cameras, microphones, browser streams and files into
timestamped items, kept apart from processing.

Every source hands ``VideoFrame`` (RGB uint8 [H, W, 3]) and ``AudioChunk`` items to a sink,
a callable ``sink(item)``. Audio always leaves a source as float32 mono 16 kHz
(``models.features.audio.to_mono_16k``). ``t`` is seconds on the pipeline clock.

- ``BrowserInput``: converts what Gradio's streaming webcam / microphone send.
- ``LocalCamera`` / ``LocalMicrophone``: capture threads over OpenCV and PortAudio. A missing
  device never raises: ``.error`` says why and ``on_error(message)`` is called, so the
  pipeline can mark the modality DROPPED.
- ``FileReplay``: replays a video or audio file as if it were live (or as fast as possible).
- ``read_media`` / ``media_duration`` / ``write_media``: whole-file helpers for tests and the
  simulator.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from models.features.audio import SAMPLE_RATE, to_mono_16k
from models.features.vision import MAX_SIDE, validate_frame
from streaming.types import AudioChunk, VideoFrame

log = logging.getLogger(__name__)

Item = VideoFrame | AudioChunk
Sink = Callable[[Item], None]
Clock = Callable[[], float]

MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHUNK_S = 10.0  # longer browser chunks are refused
CHUNK_S = 0.1  # audio chunk length emitted by local and file sources
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
NO_PORTAUDIO = "no microphone: PortAudio library not found (apt install libportaudio2)"


class SourceError(RuntimeError):
    """A source cannot be used; the message is meant for the user."""


def _check_t(t: float) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t):
        raise ValueError(f"timestamp must be a finite number of seconds, got {t!r}")
    return float(t)


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """``to_mono_16k`` with integer PCM scaled to float first: ``to_mono_16k`` averages the
    channels of [n, channels] int16/int32 audio into float64 before scaling, which clips it."""
    a = np.asarray(samples)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = a.astype(np.float32) / 2147483648.0
    return to_mono_16k(a, rate)


class BrowserInput:
    """Converts Gradio streaming payloads. Stateless except the audio sample clock."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._anchor: float | None = None  # time of the first sample counted from
        self._elapsed = 0.0  # seconds of input since the anchor (input samples / input rate)

    def start(self, t0: float = 0.0) -> None:
        """Reset the sample clock: the next chunk given without ``t`` starts at ``t0``."""
        self._t0, self._anchor, self._elapsed = _check_t(t0), None, 0.0

    def video(self, frame: np.ndarray, t: float) -> VideoFrame:
        """A webcam frame (uint8 RGB [H, W, 3], RGBA [H, W, 4] or gray [H, W] / [H, W, 1]) at
        time ``t`` -> ``VideoFrame`` with an RGB image. ValueError on anything else."""
        t = _check_t(t)
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"video frame must be a numpy array, got {type(frame).__name__}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim in (2, 3) and max(frame.shape[:2]) > MAX_SIDE:
            raise ValueError(f"video frame {frame.shape[1]}x{frame.shape[0]} larger than {MAX_SIDE} px a side")
        return VideoFrame(t, validate_frame(frame))

    def audio(self, chunk: tuple[int, np.ndarray], t: float | None = None) -> AudioChunk:
        """A microphone chunk ``(rate, samples)`` (int16 / int32 / float, mono or [n, channels])
        -> float32 mono 16 kHz ``AudioChunk``. With ``t`` None the chunk follows the previous
        one on a continuous sample clock; a given ``t`` re-anchors that clock.
        ValueError on a malformed, empty, non-finite, too long chunk or a bad rate."""
        if not isinstance(chunk, (tuple, list)) or len(chunk) != 2:
            raise ValueError(f"audio chunk must be a (rate, samples) tuple, got {type(chunk).__name__}")
        rate, samples = chunk
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
            raise ValueError(f"audio sample rate must be an integer, got {rate!r}")
        if not MIN_RATE <= int(rate) <= MAX_RATE:
            raise ValueError(f"audio sample rate {rate} Hz outside {MIN_RATE}..{MAX_RATE} Hz")
        if not isinstance(samples, np.ndarray):
            raise ValueError(f"audio samples must be a numpy array, got {type(samples).__name__}")
        if samples.ndim not in (1, 2):
            raise ValueError(f"audio must be 1-D or [n, channels], got shape {samples.shape}")
        n = samples.shape[0] if samples.ndim == 1 or samples.shape[1] <= 8 else samples.shape[1]
        if samples.size == 0 or n == 0:
            raise ValueError("empty audio chunk")
        if n / int(rate) > MAX_CHUNK_S:
            raise ValueError(f"audio chunk of {n / int(rate):.1f} s longer than {MAX_CHUNK_S:.0f} s")
        mono = _to_16k(samples, int(rate))  # dtype and NaN checks
        if t is not None:
            self._anchor, self._elapsed = _check_t(t), 0.0
        elif self._anchor is None:
            self._anchor, self._elapsed = self._t0, 0.0
        start = self._anchor + self._elapsed
        self._elapsed += n / int(rate)  # input samples: resampling rounding does not drift
        return AudioChunk(start, mono, SAMPLE_RATE)


class _Worker:
    """Thread plumbing shared by the sources: sink, error reporting, start/stop, context manager."""

    def __init__(self, sink: Sink | None, on_error: Callable[[str], None] | None) -> None:
        self.sink = sink
        self.on_error = on_error
        self.error: str | None = None  # why the source stopped or never started
        self.dropped = 0  # items that could not be converted
        self.sink_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self):  # overridden
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device (called by stop() after the thread ended)."""

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the worker to end, wait up to ``timeout`` seconds, release the device."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def _fail(self, message: str):
        self.error = message
        log.warning("%s: %s", type(self).__name__, message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("on_error callback failed")
        return self

    def _rgb(self, bgr, what: str) -> np.ndarray | None:
        """A decoded BGR frame as a validated RGB frame; None (counted, logged) if unusable."""
        try:
            return validate_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        except (ValueError, cv2.error) as e:
            self.dropped += 1
            log.warning("%s dropped: %s", what, e)
            return None

    def _emit(self, item: Item) -> None:
        """Hand one item to the sink; a failing sink is logged, never raised in a worker."""
        if self.sink is None:
            return
        try:
            self.sink(item)
        except Exception:
            self.sink_errors += 1
            if self.sink_errors <= 3:
                log.exception("%s: sink failed", type(self).__name__)


def _relative_clock() -> Clock:
    start = time.monotonic()
    return lambda: time.monotonic() - start


class LocalCamera(_Worker):
    """Captures ``cv2.VideoCapture(index)`` in a thread, emitting at most ``fps`` RGB frames
    a second, stamped with ``clock()`` (default: seconds since start()). ``index`` is a
    camera number, or a device path / stream URL (``rtsp://...``) that OpenCV can open.
    ``clock`` also paces the frames (one kept per ``1 / fps`` seconds of it; frames that come
    faster are skipped) and times the stall: ``stall_s`` seconds of it without a frame set
    ``.error`` and end the thread. A clock that steps ``1 / fps`` per call replays a stream
    deterministically (every frame kept, the stall after about ``stall_s * fps`` failed reads)."""

    def __init__(self, index: int | str = 0, fps: float = 15.0, sink: Sink | None = None, clock: Clock | None = None,
                 on_error: Callable[[str], None] | None = None, stall_s: float = 3.0) -> None:
        super().__init__(sink, on_error)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.index, self.fps, self.stall_s = index, float(fps), stall_s
        self._user_clock = clock
        self._cap: cv2.VideoCapture | None = None

    def start(self) -> LocalCamera:
        """Open the camera and start capturing; on failure set ``.error`` (never raises)."""
        if self.running:
            return self
        self.error = None
        try:
            cap = cv2.VideoCapture(self.index)
            if not cap.isOpened():
                cap.release()
                return self._fail(f"no camera: cv2.VideoCapture({self.index}) could not open a device")
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        except Exception as e:  # a broken backend must not take the app down
            return self._fail(f"no camera: {e}")
        self._cap = cap
        self._clock = self._user_clock or _relative_clock()
        self._spawn(self._loop, f"camera-{self.index}")
        return self

    def _loop(self) -> None:
        cap, period, clock = self._cap, 1.0 / self.fps, self._clock
        next_due: float | None = None  # clock time the next frame is due (None: the first frame)
        try:
            last_ok = clock()
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    if clock() - last_ok > self.stall_s:
                        self._fail(f"camera {self.index} stopped delivering frames")
                        return
                    self._stop.wait(0.02)
                    continue
                t = last_ok = clock()
                due = t if next_due is None else next_due
                if t < due - 0.25 * period:  # faster than fps: skip
                    continue
                next_due = max(due + period, t)
                frame = self._rgb(bgr, "camera frame")
                if frame is None:
                    continue
                self._emit(VideoFrame(t, frame))
        except Exception as e:
            self._fail(f"camera {self.index} failed: {e}")
        finally:
            cap.release()

    def _close(self) -> None:
        if self._cap is not None and not self.running:
            self._cap.release()


def _input_device(device: int | str | None):
    """(sounddevice module, input device info, None) or (None, None, reason)."""
    try:
        import sounddevice as sd
    except OSError:
        return None, None, NO_PORTAUDIO
    except ImportError:
        return None, None, "no microphone: the sounddevice package is not installed"
    try:
        info = sd.query_devices(device, kind="input")
        if int(info.get("max_input_channels", 0)) < 1:
            return None, None, f"no input device: {info.get('name', device)} has no input channels"
        return sd, info, None
    except Exception as e:  # PortAudioError, ValueError for an unknown name
        return None, None, f"no input device ({e})"


class LocalMicrophone(_Worker):
    """Captures a ``sounddevice.InputStream`` in a thread and emits float32 16 kHz mono
    ``AudioChunk``s of about ``block_s`` seconds on a continuous sample clock anchored to
    ``clock()`` (default: seconds since start(); re-anchored after an overflow or drift over
    0.5 s). ``stall_s`` seconds of ``clock`` without audio set ``.error`` and end the thread."""

    def __init__(self, device: int | str | None = None, rate: int | None = None, block_s: float = CHUNK_S,
                 sink: Sink | None = None, clock: Clock | None = None,
                 on_error: Callable[[str], None] | None = None, stall_s: float = 3.0) -> None:
        super().__init__(sink, on_error)
        if not 0.005 <= block_s <= MAX_CHUNK_S:
            raise ValueError(f"block_s must be in 0.005..{MAX_CHUNK_S} s, got {block_s}")
        self.device, self.rate, self.block_s, self.stall_s = device, rate, block_s, stall_s
        self._user_clock = clock
        self._stream = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(8, int(10 / block_s)))

    def start(self) -> LocalMicrophone:
        """Open the input stream and start; on failure set ``.error`` (never raises)."""
        if self.running:
            return self
        self.error = None
        sd, info, reason = _input_device(self.device)
        if reason:
            return self._fail(reason)
        try:
            rate = self.rate
            if rate is None:  # prefer 16 kHz (no resampling seams); else the device default
                try:
                    sd.check_input_settings(device=self.device, channels=1, samplerate=SAMPLE_RATE)
                    rate = SAMPLE_RATE
                except Exception:
                    rate = int(info["default_samplerate"])
            self._rate = int(rate)
            self._stream = sd.InputStream(device=self.device, channels=1, samplerate=self._rate, dtype="float32",
                                          blocksize=max(1, int(round(self._rate * self.block_s))),
                                          callback=self._callback)
            self._clock = self._user_clock or _relative_clock()
            self._stream.start()
        except Exception as e:
            self._stream = None
            return self._fail(f"no input device: cannot open {info.get('name', self.device)} ({e})")
        self._spawn(self._loop, "microphone")
        return self

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread
        try:
            self._queue.put_nowait((indata.copy(), self._clock(), bool(status.input_overflow)))
        except queue.Full:
            pass  # the consumer is stuck; the gap re-anchors the clock

    def _loop(self) -> None:
        anchor, elapsed, last = None, 0.0, self._clock()
        while not self._stop.is_set():
            try:
                block, t_cb, overflow = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._clock() - last > self.stall_s:
                    self._fail("microphone stopped delivering audio")
                    return
                continue
            last = self._clock()
            try:
                mono = _to_16k(block, self._rate)
            except ValueError as e:
                self.dropped += 1
                log.warning("microphone block dropped: %s", e)
                continue
            dur = len(block) / self._rate
            start = t_cb - dur  # the callback fires when the block is complete
            if anchor is None or overflow or abs(anchor + elapsed - start) > 0.5:
                anchor, elapsed = start, 0.0
            self._emit(AudioChunk(anchor + elapsed, mono, SAMPLE_RATE))
            elapsed += dur

    def _close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:
                log.exception("closing the input stream failed")
            self._stream = None


def probe_local_devices(camera_index: int = 0, mic_device: int | str | None = None) -> dict[str, str | None]:
    """{"vision": reason | None, "audio": reason | None}: None when the local camera /
    microphone can be opened, else why not. Never raises."""
    out: dict[str, str | None] = {"vision": None, "audio": None}
    try:
        cap = cv2.VideoCapture(camera_index)
        if not cap.isOpened():
            out["vision"] = f"no camera: cv2.VideoCapture({camera_index}) could not open a device"
        cap.release()
    except Exception as e:
        out["vision"] = f"no camera: {e}"
    try:
        out["audio"] = _input_device(mic_device)[2]
    except Exception as e:
        out["audio"] = f"no microphone: {e}"
    return out


def _decode_ffmpeg(path: Path) -> np.ndarray | None:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
                           "-ac", "1", "-ar", str(SAMPLE_RATE), "-"], capture_output=True)
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


class FileReplay(_Worker):
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

    def __init__(self, path: str | Path, sink: Sink | None = None, realtime: bool = True, speed: float = 1.0,
                 fps: float | None = None, video: bool = True, audio: bool = True, loop: bool = False,
                 t0: float = 0.0, chunk_s: float = CHUNK_S, on_error: Callable[[str], None] | None = None,
                 clock: Clock | None = None, wait: Callable[[float], bool] | None = None) -> None:
        super().__init__(sink, on_error)
        self._pace_clock: Clock = clock or time.monotonic
        self._wait: Callable[[float], bool] = wait or self._stop.wait
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"media file not found: {self.path}")
        if speed <= 0 or (fps is not None and fps <= 0) or chunk_s <= 0:
            raise ValueError("speed, fps and chunk_s must be positive")
        self.realtime, self.speed, self.fps, self.loop = realtime, float(speed), fps, loop
        self.t0, self.chunk_s = _check_t(t0), chunk_s
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
            raise SourceError(f"no readable {'video or audio' if video and audio else 'video' if video else 'audio'}"
                              f" in {self.path}")

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
                frame = self._rgb(bgr, f"{self.path}: frame {i - 1}")
                if frame is None:
                    continue
                yield VideoFrame(offset + t, frame)
        finally:
            cap.release()

    def _chunks(self, offset: float) -> Iterator[AudioChunk]:
        step = max(1, int(round(self.chunk_s * SAMPLE_RATE)))
        for s in range(0, len(self.audio), step):
            yield AudioChunk(offset + s / SAMPLE_RATE, self.audio[s:s + step].copy(), SAMPLE_RATE)

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


def write_media(path: str | Path, frames: Sequence[np.ndarray], fps: float,
                audio_16k: np.ndarray | None = None) -> Path:
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
            h264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart"]
            base = ["ffmpeg", "-nostdin", "-v", "error", "-y", *streams]
            if subprocess.run([*base, *h264, str(path)], capture_output=True).returncode == 0:
                return path
            cmd = [*base, "-c:v", "copy", str(path)]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise SourceError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace').strip()}")
    return path
