"""This machine's devices: ``LocalCamera`` (OpenCV) and ``LocalMicrophone`` (PortAudio)
capture threads, and ``probe_local_devices``. A missing device never raises: ``.error``
says why and ``on_error(message)`` is called, so the pipeline can mark the modality DROPPED."""

from __future__ import annotations

import queue
from collections.abc import Callable

import cv2

from models.features.audio import SAMPLE_RATE, to_mono_16k
from streaming.sources.base import CHUNK_S, MAX_CHUNK_S, NO_PORTAUDIO, Clock, Sink, Worker, log, relative_clock
from streaming.types import AudioChunk


class LocalCamera(Worker):
    """Captures ``cv2.VideoCapture(index)`` in a thread, emitting at most ``fps`` RGB frames
    a second, stamped with ``clock()`` (default: seconds since start()). ``index`` is a
    camera number, or a device path / stream URL (``rtsp://...``) that OpenCV can open.
    ``clock`` also paces the frames (one kept per ``1 / fps`` seconds of it; frames that come
    faster are skipped) and times the stall: ``stall_s`` seconds of it without a frame set
    ``.error`` and end the thread. A clock that steps ``1 / fps`` per call replays a stream
    deterministically (every frame kept, the stall after about ``stall_s * fps`` failed reads)."""

    def __init__(
        self,
        index: int | str = 0,
        fps: float = 15.0,
        sink: Sink | None = None,
        clock: Clock | None = None,
        on_error: Callable[[str], None] | None = None,
        stall_s: float = 3.0,
    ) -> None:
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
        self._clock = self._user_clock or relative_clock()
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
                frame = self._frame(t, bgr, "camera frame")
                if frame is not None:
                    self._emit(frame)
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


class LocalMicrophone(Worker):
    """Captures a ``sounddevice.InputStream`` in a thread and emits float32 16 kHz mono
    ``AudioChunk``s of about ``block_s`` seconds on a continuous sample clock anchored to
    ``clock()`` (default: seconds since start(); re-anchored after an overflow or drift over
    0.5 s). ``stall_s`` seconds of ``clock`` without audio set ``.error`` and end the thread."""

    def __init__(
        self,
        device: int | str | None = None,
        rate: int | None = None,
        block_s: float = CHUNK_S,
        sink: Sink | None = None,
        clock: Clock | None = None,
        on_error: Callable[[str], None] | None = None,
        stall_s: float = 3.0,
    ) -> None:
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
            self._stream = sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self._rate,
                dtype="float32",
                blocksize=max(1, int(round(self._rate * self.block_s))),
                callback=self._callback,
            )
            self._clock = self._user_clock or relative_clock()
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
                mono = to_mono_16k(block, self._rate)
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
