"""The app's sessions: ``App`` (the shared model and recogniser, the session factory, one
live session per browser tab), sessions fed by a replay (``start_replay``) or by this
machine's devices (``start_local_session``), and their closing."""

from __future__ import annotations

import atexit
import functools
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from models.cpu import RECOGNISER_NICE, in_thread, single_threaded
from streaming import limits

ASR_GPU_BATCH = 8  # the shared recogniser's batch on a GPU (one buffer at a time on the CPU)


class ServerBusy(RuntimeError):
    """No session can be opened now: as many as the server serves at real-time pace are
    open. The message is meant for the page."""


class App:
    """Shared, read-only parts (model, recogniser weights) and the session factory.
    ``clock_factory()``, when given, makes each new session's clock (a callable giving
    seconds on the pipeline clock, e.g. to follow a test's media time); None: each session
    counts wall-clock seconds from its creation (``LiveSession``'s default). ``engine``:
    the sessions' model calls batched across sessions by one ``models.engine.InferenceEngine``
    (default); False: each session calls the model directly; "ray": the batched calls go to
    a Ray Serve deployment (``models.serve_ray``) at ``address`` (None: a local Ray instance).

    The process's CPU policy comes with it (``models.cpu``): each library call on one
    thread, and the recogniser (its Whisper's worker threads, its batcher and the sessions'
    recogniser threads) at a lower priority than the windows.

    Visitors' limits (``streaming.limits``): at most ``max_sessions`` sessions (live and
    replays) at once, the next one refused with ``ServerBusy``; a live session with no input
    for ``idle_timeout_s`` (on its own clock) is closed by a reaper thread every ``reap_every_s``
    seconds (``reap_idle``), its memory freed; the tab gets a fresh one if it comes back."""

    def __init__(
        self,
        model=None,
        asr_model=None,
        window_s: float = 3.0,
        hop_s: float = 1.0,
        asr: bool = True,
        clock_factory=None,
        engine: bool | str = True,
        device: str = "cpu",
        address: str | None = None,
        max_sessions: int = limits.MAX_SESSIONS,
        idle_timeout_s: float = limits.IDLE_TIMEOUT_S,
        reap_every_s: float | None = 5.0,
        fusion: str = "lnln",
    ):
        from models.engine import InferenceEngine
        from models.runtime import SentimentModel

        single_threaded()
        self.model = model or SentimentModel.load(device=device, fusion=fusion)
        self._fusion_of: dict[str, str] = {}  # a browser tab's chosen fusion model (``set_fusion``)
        self.device = device
        # load the text and audio extractors now, not inside the first live window (seconds)
        self.model.text_features("warm up")
        self.model.audio_features(np.zeros(16000, np.float32))
        self.window_s, self.hop_s = window_s, hop_s
        self._asr_model = asr_model
        self.asr = asr
        self.clock_factory = clock_factory
        self.engine = InferenceEngine(self.model) if engine is True else None
        self.ray_handle = None
        if engine == "ray":
            from models import serve_ray

            self.ray_handle = serve_ray.start(address, device=device, fusion=self.default_fusion)
        self._live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._live_lock = threading.Lock()
        self._sessions: weakref.WeakSet = weakref.WeakSet()  # sessions made here, open or closed
        self.max_sessions, self.idle_timeout_s = int(max_sessions), float(idle_timeout_s)
        self.refused = 0  # sessions refused as the server was full
        self.reaped = 0  # live sessions closed for lack of input
        self._stop = threading.Event()
        if reap_every_s:
            threading.Thread(target=self._reaper, args=(reap_every_s,), name="idle-reaper", daemon=True).start()
        self._decoder = None
        self._asr_lock = threading.Lock()  # (live_session holds _live_lock while it makes a session)
        # the shared recogniser (one batch at a time) takes half the cores at most, so that the
        # windows' own work keeps the rest when many sessions talk; alone, a session gets one
        self.asr_threads = max(1, (os.cpu_count() or 1) // 2) if engine else 1

    def new_asr(self):
        if not self.asr:
            return None
        from streaming.asr import StreamingASR

        if self.ray_handle is not None:  # Whisper runs in the Ray Serve recogniser
            return StreamingASR(decoder=self.recogniser())
        with self._asr_lock:
            if self._asr_model is None:  # loaded once, shared by all sessions, below the windows' priority
                load = functools.partial(StreamingASR, device=self.device, threads=self.asr_threads)
                self._asr_model = in_thread(load, RECOGNISER_NICE).model
        decoder = self.recogniser()
        # a session reads its buffer once the shared recogniser has a seat for it (oldest first)
        return StreamingASR(whisper=self._asr_model, decoder=decoder, seat=getattr(decoder, "seat", None))

    def recogniser(self):
        """What every session's recogniser decodes through: one ``Batcher`` over a shared
        ``WhisperDecoder`` (embedded engine), the Ray Serve recogniser's handle (``--serve
        ray``), or None (``engine=False``: each session decodes alone)."""
        with self._asr_lock:
            if self._decoder is None and self.ray_handle is not None:
                from models import serve_ray

                self._decoder = serve_ray.ray_decoder(serve_ray.start_recogniser(device=self.device))
            elif self._decoder is None and self.engine is not None:
                from models.batcher import Batcher
                from streaming.whisper_batch import WhisperDecoder

                decoder = WhisperDecoder(self._asr_model)
                # on a GPU one batch of many sessions' buffers costs about one buffer's time; on
                # the CPU a batch costs the sum of its buffers (the encoder is compute-bound),
                # so batching there only makes each session wait for the others' decodes too:
                # one buffer at a time, oldest first
                gpu = getattr(self._asr_model.model, "device", "cpu") == "cuda"
                self._decoder = Batcher(
                    decoder.decode_many,
                    max_batch=ASR_GPU_BATCH if gpu else 1,
                    max_wait_s=0.01 if gpu else 0.0,
                    name="engine-asr",
                    nice=RECOGNISER_NICE,
                )
                self.engine.extra.append(self._decoder)
            return self._decoder

    def new_session(
        self, window_s: float | None = None, hop_s: float | None = None, asr_mode: str = "thread", worker: bool = True
    ):
        with self._live_lock:
            self._admit()
            return self._new_session(window_s, hop_s, asr_mode, worker)

    def _admit(self) -> None:
        """ServerBusy when ``max_sessions`` sessions are open (called holding ``_live_lock``)."""
        if self.open_sessions() >= self.max_sessions:
            self.refused += 1
            raise ServerBusy(
                f"The server is busy: {self.max_sessions} sessions are running, as many as it serves in real time. "
                "Try again in a minute."
            )

    def _new_session(self, window_s, hop_s, asr_mode, worker):
        from streaming.session import LiveSession

        clock = self.clock_factory() if self.clock_factory is not None else None
        model = self.engine.client() if self.engine is not None else self.model
        if self.ray_handle is not None:
            from models.serve_ray import ray_client

            model = ray_client(self.ray_handle, self.model)
        s = LiveSession(
            model, self.new_asr(), window_s or self.window_s, hop_s or self.hop_s, asr_mode, clock=clock, worker=worker
        )
        _OPEN_SESSIONS.add(s)
        self._sessions.add(s)
        return s

    def open_sessions(self) -> int:
        """Sessions made here and not closed (live, replays, local devices)."""
        return sum(not s.closed for s in list(self._sessions))

    def reap_idle(self) -> int:
        """Closes the live sessions whose newest input is more than ``idle_timeout_s`` old on
        their own clock (the tab left or stopped streaming); returns how many."""
        with self._live_lock:
            idle = [s for s in list(self._live.values()) if not s.closed and s.idle_for() > self.idle_timeout_s]
        for s in idle:
            s.close()
        self.reaped += len(idle)
        if idle:
            release_memory()
        return len(idle)

    def _reaper(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.reap_idle()
            except Exception as e:  # never let the reaper die; the next pass tries again
                print(f"idle reaper: {type(e).__name__}: {e}")

    def live_session(self, key: str | None):
        """The live session of one browser tab (``key``: Gradio's session hash), made on its
        first input; the webcam's and the microphone's first events arrive together and must
        find the same one."""
        with self._live_lock:
            s = self._live.get(key) if key else None
            if s is None or s.closed:
                self._admit()
                s = self._new_session(None, None, "thread", True)
                if key:
                    self._live[key] = s
                    if key in self._fusion_of:  # the tab chose a fusion before this session
                        s.set_fusion(self._fusion_of[key])
            return s

    @property
    def fusions(self) -> list[str]:
        """The fusion models a visitor can choose (those shipped; the server's default first)."""
        names = getattr(self.model, "fusions_available", [self.default_fusion])
        if self.ray_handle is not None:  # the Ray Serve deployment runs the one it was started with
            names = [self.default_fusion]
        return sorted(names, key=lambda n: n != self.default_fusion)

    @property
    def default_fusion(self) -> str:
        return getattr(self.model, "fusion_name", "lnln")

    def set_fusion(self, key: str | None, session, name: str) -> None:
        """Tab ``key``'s windows from now on go to fusion ``name``, in ``session`` (its current
        session, if any) and in the sessions it gets later. ValueError for one not offered."""
        if name not in self.fusions:
            raise ValueError(f"{name!r} is not offered here: {', '.join(self.fusions)}")
        if session is not None:
            session.set_fusion(name)
        if key:
            with self._live_lock:
                self._fusion_of[key] = name

    def session_for(self, key: str):
        """The live session of the browser tab ``key`` (Gradio's session hash), or None."""
        with self._live_lock:
            return self._live.get(key)

    def recogniser_batches(self) -> dict[int, int]:
        """Batch size -> batches the shared recogniser ran (empty without the engine)."""
        d = self._decoder
        return dict(d.sizes) if hasattr(d, "sizes") else {}

    def close(self) -> None:
        """Stops the engine's batchers (and the shared recogniser's) and the idle reaper; the
        sessions close apart."""
        self._stop.set()
        if self.engine is not None:
            self.engine.close()


#: Sessions not yet garbage-collected; closed at interpreter exit (stops capture workers and
#: recogniser threads before the interpreter tears down the libraries they run in).
_OPEN_SESSIONS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    for s in list(_OPEN_SESSIONS):
        close_session(s)


def release_memory() -> None:
    """Hands the heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere): what closed sessions freed then leaves the server's resident memory, rather than
    staying in the allocator's arenas of the threads that used it."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def close_session(session) -> None:
    if session is not None:
        session.close()


def replay_problem(e: Exception) -> str:
    """A one-line reason from a source error (no temporary paths)."""
    msg = str(e)
    if "no readable" in msg or "cannot decode" in msg or "Invalid data" in msg:
        tail = msg.rsplit(": ", 1)[-1] if ": " in msg else ""
        return "it is not a video or audio file that can be read" + (f" ({tail})" if tail and "/" not in tail else "")
    return msg.split(" /")[0]


def demo_clip_available() -> bool:
    import shutil

    from models.paths import data_root

    try:
        return shutil.which("espeak-ng") is not None and (data_root() / "vision" / "fer2013_test.npz").is_file()
    except Exception:  # no data folder configured
        return False


def start_replay(app: App, path: str, spec: str = "", realtime: bool = True):
    """A session fed by a replay of ``path`` on a thread, with scheduled faults ``spec``.
    SourceError (before anything starts) for a file that cannot be read; a failure during
    the replay is shown as the session's "replay" error."""
    from streaming.faults import parse_spec
    from streaming.replay import drive
    from streaming.sources import FileReplay, SourceError

    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise SourceError(f"{os.path.basename(path)} is empty (0 bytes)")
    src = FileReplay(path, sink=None, realtime=realtime)  # SourceError for an unreadable file
    s = app.new_session(asr_mode="sync", worker=False)
    s.name = Path(path).stem
    s.faults.faults = parse_spec(spec)

    def failed(e: Exception) -> None:  # shown on the page; the windows so far are closed off
        s.errors["replay"] = f"the replay stopped: {replay_problem(e)}"

    run = functools.partial(drive, src, s.push, flush=s.finish, stop=lambda: s.closed, on_error=failed)
    threading.Thread(target=run, name="replay", daemon=True).start()
    return s


def start_local_session(app: App):
    """A session fed by this machine's camera and microphone; a missing device is reported
    (and its modality DROPPED), never raised."""
    from streaming.sources import LocalCamera, LocalMicrophone

    s = app.new_session()
    cam = LocalCamera(sink=s.submit, clock=s.clock, on_error=lambda m: s.source_error("vision", m))
    mic = LocalMicrophone(sink=s.submit, clock=s.clock, on_error=lambda m: s.source_error("audio", m))
    for w in (cam, mic):
        w.start()
        s.workers.append(w)
    for name, w in (("vision", cam), ("audio", mic)):
        if w.error:
            print(f"{name}: {w.error}")
            s.source_error(name, w.error)
    return s
