"""The streaming pipeline: items in, one ``WindowResult`` per window out.

    sources -> faults -> health -> windowing -> features -> fusion -> smoothing -> results

``Pipeline.push(item, now)`` takes a ``VideoFrame`` or ``AudioChunk`` (t: capture time on the
pipeline clock; now: when it arrived, by default t), passes it through the fault injector,
checks it, stores it, feeds audio to the recogniser, and returns the windows that became
due. How late an item already was on arriving (``now`` - its end) is the transport's lag
(browser, network, the server's queue): each window reports the most, ``lag["transport"]``,
and health never holds it against the sensor; only the lateness the sensor stage adds (a
delay fault) is. ``advance(now)`` lets time pass without items (a dead sensor sends nothing, yet its
windows must still come out). ``flush(end)`` ends the stream: the recogniser commits what
it still holds, the grid windows up to ``end`` come out, and then one final window over
what they left (``Windower.tail``), so a recording shorter than one window still gives a
window of its true length.

The recogniser runs either inside the window step (``asr_mode="sync"``: deterministic, what
the simulator and tests use) or on its own thread (``"thread"``, ``streaming.asr_thread``:
live use, so a slow decode never holds a window back). A modality judged DROPPED is masked
out of the model input; in a DEGRADED one the unusable frames and samples are masked and the
rest is read.

Each item is checked once on its way: a ``VideoFrame`` is a valid RGB frame by construction
(its source made it), so the pipeline turns it grey once for the image checks, the face
checks and the face analyser's crop (a run of the same frame, found frozen once it has lasted
``HealthConfig.frozen_s``, was frozen from its first frame: the run's earlier frames are
marked frozen then too, so a window lying inside a freeze reads none of them and is DROPPED
"frozen frames"); a chunk's form and quality are checked once here
(``AudioChecker.chunk``), and only a usable chunk is stored and heard. Each face crop is
encoded once, when its frame arrives (``model.face_frames``; off the window's path), however
many windows hold it, and a window's frames are put together by the model
(``model.face_sequence``).

One ``Pipeline`` serves one stream (one browser session, one replay); the model is shared.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.cpu import RECOGNISER_NICE
from models.features.audio import SAMPLE_RATE
from models.types import VISION_FPS, VISION_FRAMES, WINDOW_SECONDS, Modality, SentimentResult, WindowFeatures
from streaming.asr_thread import AsrThread
from streaming.checks import (
    FROZEN,
    SEVERAL_FACES,
    AudioChecker,
    Check,
    VisionChecker,
    audio_window_issue,
    centre_gray,
    small_gray,
)
from streaming.faults import FaultInjector
from streaming.health import HealthConfig, HealthMonitor
from streaming.smoothing import Smoother, SmoothingConfig
from streaming.transcript_trust import sort_window_words
from streaming.types import AudioChunk, Health, HealthStatus, Transcript, VideoFrame, WindowResult
from streaming.windowing import AnalysedFrame, AudioTrack, VisionTrack, Windower, words_in


@dataclass
class PipelineConfig:
    window_s: float = WINDOW_SECONDS  # the window the fusion model was trained on
    hop_s: float = 1.0
    vision_fps: float = float(VISION_FPS)  # frames analysed per second (the rest only count as alive)
    # words this far back from the window's end are read (at least the window): the words of
    # the window itself; context over time comes from the smoothing (streaming.smoothing),
    # so the words of a line already over do not hold the next window to their sentiment
    text_context_s: float = 3.0
    keep_s: float = 15.0  # history kept for windows and the recogniser
    asr_mode: str = "sync"  # "sync", "thread" or "off"
    asr_every_s: float = 0.0  # thread mode: least time from a decode's end to the next (streaming.asr_thread); 0: on new audio
    asr_nice: int = RECOGNISER_NICE  # thread mode: the recogniser thread's priority below the windows' (models.cpu)
    # a window is judged this long after it ends, so data captured inside it but still on
    # its way (a browser's microphone chunk arrives when its 0.5 s are over) are in; 0 for
    # replays, whose items come in capture order
    settle_s: float = 0.0
    # while an input's items come late (``lag["transport"]``) or a gap in its transport holds
    # them up, windows wait for them up to this much longer, so they are judged on their
    # data rather than on what has not arrived yet; 0 for replays
    wait_late_s: float = 0.0
    health: HealthConfig = field(default_factory=HealthConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)

    def __post_init__(self) -> None:
        if self.asr_mode not in ("sync", "thread", "off"):
            raise ValueError(f"asr_mode must be sync, thread or off, not {self.asr_mode!r}")
        if not (0 < self.hop_s <= self.window_s <= 10):
            raise ValueError(f"need 0 < hop <= window <= 10 s, got {self.hop_s}, {self.window_s}")
        if self.vision_fps <= 0:
            raise ValueError("vision_fps must be positive")
        if self.settle_s < 0 or self.wait_late_s < 0:
            raise ValueError("settle_s and wait_late_s must not be negative")


class Pipeline:
    """One stream's state. ``model``: a ``models.runtime.SentimentModel``; ``asr``: a
    ``streaming.asr.StreamingASR`` or None (then text comes only from ``set_text``)."""

    def __init__(
        self, model, asr=None, faults: FaultInjector | None = None, cfg: PipelineConfig | None = None, face_analyzer=None
    ):
        from models.features.vision import FaceAnalyzer

        self.cfg = cfg or PipelineConfig()
        self.model = model
        self.faults = faults or FaultInjector()
        self.health = HealthMonitor(self.cfg.health, expected_fps=self.cfg.vision_fps)
        self.faces = face_analyzer or FaceAnalyzer(static=False)
        self._vision_check = VisionChecker(self.cfg.health)
        self._audio_check = AudioChecker(self.cfg.health)
        self.audio = AudioTrack(self.cfg.keep_s)
        self.vision = VisionTrack(self.cfg.keep_s)
        self.windower = Windower(self.cfg.window_s, self.cfg.hop_s)
        self.smoother = Smoother(self.cfg.smoothing)
        self._asr = asr if self.cfg.asr_mode != "off" else None
        self._asr_thread = (
            AsrThread(asr, self.cfg.asr_every_s, self.cfg.asr_nice) if asr is not None and self.cfg.asr_mode == "thread" else None
        )
        self._transcript = Transcript(t=0.0)
        self._typed_text: tuple[float, str] | None = None
        self._last_vision_t = -np.inf
        self._frozen_run: float | None = None  # the first frame of the run last found frozen
        self._clock = -np.inf
        self._data_end = -np.inf  # where the latest item's data ends (stream time)
        # how late items already were on reaching the pipeline (the transport's lag: browser,
        # network, the server's queue), per modality: the latest, and (capture time, lateness)
        self._transport = {Modality.VISION: 0.0, Modality.AUDIO: 0.0}
        self._entry = {Modality.VISION: -np.inf, Modality.AUDIO: -np.inf}  # when the latest came
        self._arrived_to = {Modality.VISION: -np.inf, Modality.AUDIO: -np.inf}  # data in, to (stream time)
        self.settle_now = self.cfg.settle_s  # how long after its end a window is judged now
        self._transport_log = {m: deque(maxlen=4096) for m in self._transport}
        self._lock = threading.RLock()
        self.asr_ms: list[float] = []  # recogniser step times in sync mode (all modes: recogniser_ms)

    # ------------------------------------------------------------ input
    def push(self, item: VideoFrame | AudioChunk, now: float | None = None) -> list[WindowResult]:
        """Takes one item; returns the windows that became due (usually none or one)."""
        now = item.t if now is None else now
        with self._lock:
            if isinstance(item, (VideoFrame, AudioChunk)):
                # a frame stands for one analysis period; a chunk ends after its samples
                end = item.t + 1.0 / self.cfg.vision_fps if isinstance(item, VideoFrame) else item.end
                self._data_end = max(self._data_end, end)
            if isinstance(item, VideoFrame):
                self._entered(Modality.VISION, item.t, item.t, now)
                for f in self.faults.video(item):
                    self._video(f, now)
            elif isinstance(item, AudioChunk):
                self._entered(Modality.AUDIO, item.t, item.end, now)
                for c in self.faults.audio(item):
                    self._audio(c, now)
            else:
                raise TypeError(f"push takes VideoFrame or AudioChunk, not {type(item).__name__}")
            return self._advance(now)

    def _entered(self, m: Modality, t: float, end: float, now: float) -> None:
        """An item captured at ``t`` (its data ending at ``end``) reached the pipeline at
        ``now``: how late it already was is the transport's lag, not the sensor's. Items a
        delay fault holds back are judged against it when they come out."""
        late = max(0.0, now - end)
        self._transport[m] = late
        self._entry[m] = now
        self._arrived_to[m] = max(self._arrived_to[m], end)
        log = self._transport_log[m]
        log.append((t, late))
        while log[0][0] < t - self.cfg.keep_s:  # windows look back no further than keep_s
            log.popleft()

    def advance(self, now: float) -> list[WindowResult]:
        """Time passes with no new item: releases delayed items, emits due windows."""
        with self._lock:
            self._release(now)
            return self._advance(now)

    def _release(self, now: float) -> None:
        """Delayed items whose time has come go in (a delay fault holds them back)."""
        for f in self.faults.release(Modality.VISION, now):
            self._video(f, now)
        for c in self.faults.release(Modality.AUDIO, now):
            self._audio(c, now)

    def source_error(self, modality: Modality | str, message: str) -> None:
        """A device is missing or failed: the modality is DROPPED with this reason."""
        with self._lock:
            self.health.source_error(Modality(modality), message)

    def reject(self, modality: Modality | str, t: float, reason: str, duration: float = 0.1) -> None:
        """An item that could not even be converted (bad type, shape, dtype, rate): it counts
        as an unusable item of ``modality`` with this reason, and is never stored."""
        m = Modality(modality)
        with self._lock:
            w = 1.0 / self.cfg.vision_fps if m == Modality.VISION else duration
            self.health.observe(m, t, w, Check(False, reason), t)

    def begin(self, t: float) -> None:
        """The stream begins at ``t``: the first window starts there (by default the stream
        begins at the first clock reading the pipeline gets)."""
        with self._lock:
            self.windower.due(t)

    @property
    def recogniser_ms(self) -> list[float]:
        """The recogniser's decode times (ms): each step in sync mode, each decode cycle of
        its thread in thread mode; empty without a recogniser."""
        return self._asr_thread.decode_ms if self._asr_thread is not None else self.asr_ms

    @property
    def transcript(self) -> Transcript | None:
        """The recogniser's latest good transcript (None without a recogniser). With the
        recogniser on its thread, the newest decode, not the one the last window read: the
        transcript panel shows words as they are decoded (during a text outage, what the
        windows last read)."""
        if self._asr is None:
            return None
        if self._asr_thread is not None and not self.faults.text_outage(self._clock):
            tr = self._asr_thread.latest()
            if tr is not None and not tr.error and (self._transcript is None or tr.t >= self._transcript.t):
                return tr
        return self._transcript

    def skip(self, frame: VideoFrame, now: float) -> None:
        """A camera frame the caller had no time to analyse (a backlog under load): the camera
        delivered it, so it counts as alive, never as a fault; nothing of it is read."""
        with self._lock:
            self._data_end = max(self._data_end, frame.t + 1.0 / self.cfg.vision_fps)
            self._entered(Modality.VISION, frame.t, frame.t, now)
            for f in self.faults.video(frame):  # a dropped camera stays dropped
                self.health.passed(Modality.VISION, f.t, now, self._transport[Modality.VISION])

    def set_text(self, text: str, now: float) -> None:
        """Typed text instead of (or besides) the recogniser's, read by windows ending after now."""
        with self._lock:
            self._typed_text = (now, text) if text and text.strip() else None

    def _video(self, frame: VideoFrame, now: float) -> None:
        if frame.t < self._last_vision_t + 1.0 / self.cfg.vision_fps - 1e-3:
            self.health.passed(Modality.VISION, frame.t, now, self._transport[Modality.VISION])  # alive, not analysed
            return
        self._last_vision_t = frame.t
        crop = None
        # a VideoFrame's image is a valid RGB frame (checked when it was made); it is turned
        # grey once, for the image checks, the face checks and the face crop
        rgb = frame.image
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small = small_gray(gray)
        check = self._vision_check.image(frame.t, small, centre_gray(gray))
        still = self._vision_check.still_since
        if not check.usable and check.issue == FROZEN and still is not None and still != self._frozen_run:
            # the run of the same frame has lasted long enough to be frozen: it was frozen from
            # its first frame, which the frames before this one could not yet tell
            self._frozen_run = still
            self.health.restate(Modality.VISION, still, frame.t, check)
            self.vision.restate(still, frame.t, check)
        if check.usable:
            obs = self.faces(rgb, gray=gray)
            face_check = self._vision_check.face(small, obs.n_faces, obs.crop is not None, obs.box, rgb.shape[1])
            if face_check.issue:
                check = face_check if (not face_check.usable or not check.issue) else check
            if face_check.usable:
                crop = obs.crop
        self.health.observe(Modality.VISION, frame.t, 1.0 / self.cfg.vision_fps, check, now, self._transport[Modality.VISION])
        analysed = AnalysedFrame(frame.t, crop if check.usable else None, check)
        if analysed.crop is not None:  # encoded on arrival, off the window's path
            analysed.features = self.model.face_frames(analysed.crop[None])[0]
        self.vision.add(analysed)

    def _audio(self, chunk: AudioChunk, now: float) -> None:
        # the one check of a chunk's form (1-D float, finite, 16 kHz) and quality in the pipeline
        check = self._audio_check.chunk(chunk.samples, chunk.rate)
        self.health.observe(Modality.AUDIO, chunk.t, chunk.duration, check, now, self._transport[Modality.AUDIO])
        if not check.usable:
            if chunk.rate == SAMPLE_RATE and chunk.duration:  # its place on the sample grid is a gap
                self.audio.write(chunk.t, np.zeros(len(chunk.samples), np.float32), False)
            return
        samples = np.asarray(chunk.samples, np.float32)
        self.audio.write(chunk.t, samples, True)
        if self._asr is not None and not self.faults.text_outage(now):
            if self._asr_thread is not None:
                self._asr_thread.push(samples, chunk.t)
            else:
                try:
                    self._asr.push(samples, chunk.t)
                except ValueError as e:
                    self._transcript = Transcript(t=now, error=str(e))

    # ------------------------------------------------------------ windows
    def _advance(self, now: float) -> list[WindowResult]:
        self._clock = max(self._clock, now)
        # a window is judged once the data of every input still arriving is in up to its end
        # (late in the transport, or a gap in it), waiting at most wait_late_s for it; an
        # input quiet for longer is judged on what it sent (its windows: no data)
        due = self._clock - self.cfg.settle_s
        if self.cfg.wait_late_s > 0:
            held = [self._arrived_to[m] for m in self._entry if self._clock - self._entry[m] <= self.cfg.wait_late_s]
            due = max(min([due, *held]), self._clock - self.cfg.settle_s - self.cfg.wait_late_s)
        self.settle_now = self._clock - due
        out = []
        for start, end in self.windower.due(due):
            out.append(self._window(start, end, self._clock))
        return out

    def _recognise(self, now: float) -> Transcript | None:
        """Brings the transcript up to date; None when the recogniser is out."""
        if self._asr is None:
            return self._transcript
        if self.faults.text_outage(now):
            self.health.asr(None, now, outage=True)
            return None
        if self._asr_thread is not None:
            tr = self._asr_thread.latest()
            if tr is None:  # nothing decoded yet: alive, empty
                tr = Transcript(t=now)
        else:
            t0 = time.perf_counter()
            try:
                tr = self._asr.step(now)
            except Exception as e:  # a failed decode is a health state
                tr = Transcript(t=now, error=str(e) or type(e).__name__)
            self.asr_ms.append(1000 * (time.perf_counter() - t0))
        self.health.asr(tr, now)
        if not tr.error:
            self._transcript = tr
        return tr

    def _window(self, start: float, end: float, now: float) -> WindowResult:
        t0 = time.perf_counter()
        cfg = self.cfg
        tr = self._recognise(now)
        statuses: dict[Modality, HealthStatus] = {}

        # vision
        statuses[Modality.VISION] = self.health.judge(Modality.VISION, start, end, now)
        vision = None
        vision_reliability = 1.0
        if statuses[Modality.VISION].state != Health.DROPPED:
            frames = self.vision.window(start, end, VISION_FRAMES)  # as many as the model was trained with
            # each frame's face is encoded once, on arrival (``_video``); a frame added
            # without its features is encoded when a window first holds it
            todo = [f for f in frames if f.crop is not None and f.features is None]
            if todo:
                for f, x in zip(todo, self.model.face_frames(np.stack([f.crop for f in todo]))):
                    f.features = x
            read = [f for f in frames if f.features is not None]
            if read:
                vision = self.model.face_sequence([f.features for f in frames])
                # with several faces in view the face read may not be the speaker's
                vision_reliability = float(np.mean([f.check.issue != SEVERAL_FACES for f in read]))
            else:
                statuses[Modality.VISION] = HealthStatus(Health.DROPPED, statuses[Modality.VISION].reason or "no usable frame")

        # audio
        samples, ok = self.audio.read(start, end)
        extra = audio_window_issue(samples, ok, cfg.health)
        statuses[Modality.AUDIO] = self.health.judge(Modality.AUDIO, start, end, now, extra)
        audio = None
        if statuses[Modality.AUDIO].state != Health.DROPPED and ok.any():
            audio = self.model.audio_features(samples, AudioTrack.frame_valid(ok))

        statuses[Modality.TEXT], words, text_end = self._text(tr, start, end, statuses[Modality.AUDIO], now)
        text_str, committed = words.text, words.committed
        if self._typed_text is not None:
            text_str = (self._typed_text[1] + " " + text_str).strip()
            committed = (self._typed_text[1] + " " + committed).strip()
        text = None
        if statuses[Modality.TEXT].state != Health.DROPPED and text_str:
            text = self.model.text_features(text_str)

        result: SentimentResult = self.model.predict(
            WindowFeatures(text=text, audio=audio, vision=vision, reliability={Modality.VISION: vision_reliability})
        )
        smoothed = self.smoother.update(result)
        latency = 1000 * (time.perf_counter() - t0)
        lag = {"recogniser": round(max(0.0, end - text_end), 2)} if self._asr_thread is not None else {}
        late = [x for log in self._transport_log.values() for t, x in log if start <= t < end]
        if late:  # the latest any of the window's items reached the pipeline
            lag["transport"] = round(max(late), 2)
        return WindowResult(start, end, result, statuses, committed, words.partial, latency, smoothed, words.suppressed, lag)

    def _text(self, tr: Transcript | None, start: float, end: float, audio: HealthStatus, now: float):
        """The window's words and the text's health: (status, ``WindowWords``, where the
        words read end). In thread mode the recogniser decodes behind the audio: the words
        read end where its last decode ended, and the rest is lag."""
        cfg = self.cfg
        text_end = end
        committed, partial = [], []
        if tr is not None:
            if self._asr_thread is not None:
                text_end = min(end, max(tr.t, self._asr_thread.decoded_to))
            lo = text_end - max(cfg.text_context_s, cfg.window_s)
            committed, partial = words_in(tr.committed, lo, text_end), words_in(tr.partial, lo, text_end)
        words = sort_window_words(committed, partial)
        if self._asr is None:
            status = HealthStatus(Health.OK, "typed text") if self._typed_text else HealthStatus(Health.DROPPED, "no recogniser")
        else:
            status = self.health.text(audio, len(words.trusted), now, start, words.reasons)
        return status, words, text_end

    def flush(self, end: float | None = None) -> list[WindowResult]:
        """End of stream at ``end`` (default: where the data pushed so far end). The
        recogniser commits what it still holds, the windows due up to ``end`` come out, and
        then one final window over the stretch they did not cover, of its true length
        (``Windower.tail``): a recording shorter than one window gives exactly that one."""
        with self._lock:
            if self._clock == -np.inf:
                return []
            end = max(self._data_end if end is None else float(end), self._clock)
            self._release(end)
            if self._asr is not None and not self.faults.text_outage(end):
                if self._asr_thread is not None:
                    self._transcript = self._asr_thread.flush(end)
                else:
                    try:
                        self._transcript = self._asr.flush(end)
                    except Exception as e:  # a failed decode is a health state
                        self._transcript = Transcript(t=end, error=str(e) or type(e).__name__)
            out = self._advance(end)
            tail = self.windower.tail(end)
            if tail is not None:
                out.append(self._window(tail[0], tail[1], self._clock))
            return out

    def close(self) -> None:
        """Frees the session's resources: the recogniser thread, the face mesh, and the media
        and checks it holds (the kept audio and analysed frames, the health record). The
        transcript stays readable; a closed pipeline takes no input."""
        if self._asr_thread is not None:
            self._asr_thread.close()
        try:
            self.faces.close()
        except Exception:  # already closed
            pass
        with self._lock:
            self.audio = AudioTrack(self.cfg.keep_s)
            self.vision = VisionTrack(self.cfg.keep_s)
            self.health = HealthMonitor(self.cfg.health, expected_fps=self.cfg.vision_fps)
            for log in self._transport_log.values():
                log.clear()
