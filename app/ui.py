"""The Gradio page (``python app.py``).

Tab "Live": the browser streams webcam frames and microphone chunks (``stream_frame``,
``stream_audio``) into a per-browser ``LiveSession``; every hop the page shows the fused
sentiment and confidences, each modality's estimate, the sensors' health, the transcript,
a timeline and latency; faults can be switched on live; results export as CSV / JSON.
With ``--local-devices`` this machine's camera and microphone feed one shared session.
Tab "Replay": a recording (or the built-in demo clip) replayed under scheduled faults,
the sensor-failure simulator. Tab "One window": a transcript, a short recording and a
face picture analysed as one window (``analyse``).
Nothing is stored on the server beyond the session's lifetime.
"""

from __future__ import annotations

import argparse
import atexit
import os
import weakref
from pathlib import Path

import gradio as gr  # at module level: the handlers' ``gr.Request`` hints resolve here
import numpy as np

from models.types import SENTIMENT_CLASSES, Modality, WindowFeatures

NOTICE = (
    "This estimates the sentiment a person *expresses* in words, voice and face. "
    "It is not a diagnosis and says nothing certain about how anyone feels. Nothing you send is stored."
)
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
        except Exception:  # noqa: BLE001 - any malformed data URL
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
        from models.features.text import MAX_CHARS

        ext = getattr(self.model, "_text_extractor", None)
        if ext is None:
            return None
        ids = ext.tokenizer(text[:MAX_CHARS], add_special_tokens=True)["input_ids"]
        if len(ids) <= ext.max_tokens and len(text) <= MAX_CHARS:
            return None
        enc = ext.tokenizer(text[:MAX_CHARS], truncation=True, max_length=ext.max_tokens, return_offsets_mapping=True)
        read = max((b for _, b in enc["offset_mapping"]), default=0)
        return (
            f"text: only the first {read:,} of {len(text):,} characters were read (the text model reads "
            f"{ext.max_tokens} word pieces, about one window's words), up to \"…{text[max(0, read - 30):read]}\""
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


# ====================================================================== live
FAULT_CHOICES = [
    "vision:drop", "vision:freeze", "vision:blackout", "vision:noise", "vision:delay",
    "audio:drop", "audio:freeze", "audio:blackout", "audio:noise", "audio:delay",
    "text:outage",
]
STATE_STYLE = {"OK": "#1b7f3b", "DEGRADED": "#b86e00", "DROPPED": "#b3261e"}
TRANSCRIPT_SPAN_S = 60.0  # the transcript panel shows the words of the last minute


def _esc(text: str) -> str:
    import html

    return html.escape(str(text), quote=True)


def health_html(row: dict | None, errors: dict[str, str] | None = None) -> str:
    """Per-modality badges: state, reason, the modality's own estimate."""
    cards = []
    for m in ("vision", "audio", "text"):
        if row is None:
            state, reason, score = "waiting", errors.get(m, "") if errors else "", None
        else:
            d = row["modalities"][m]
            state, reason, score = d["state"], d["reason"], d["score"]
        colour = STATE_STYLE.get(state, "#666")
        est = "" if score is None else f"<div style='font-size:0.85em'>own estimate {score:+.2f}</div>"
        cards.append(
            f"<div class='badge' data-modality='{m}' data-state='{state}' style='flex:1;border:2px solid {colour};"
            f"border-radius:8px;padding:6px 8px;margin:2px'><b>{m}</b> "
            f"<span style='color:#fff;background:{colour};border-radius:4px;padding:0 6px'>{state}</span>"
            f"<div style='font-size:0.8em;color:#555;min-height:1.2em'>{_esc(reason)}</div>{est}</div>"
        )
    return "<div style='display:flex;gap:4px'>" + "".join(cards) + "</div>"


def score_html(row: dict | None) -> str:
    if row is None:
        return "<div class='headline' data-state='waiting' style='font-size:1.1em;color:#666'>waiting for the first window...</div>"
    if row.get("no_data"):
        why = "; ".join(f"{m} {d['reason'] or d['state']}" for m, d in row["modalities"].items())
        return (
            "<div class='headline' data-state='no-data' style='font-size:1.6em;color:#666'><b>no data</b> "
            f"<span style='font-size:0.6em'>no modality is usable in window {row['t_start']:.0f}-{row['t_end']:.0f} s "
            f"({_esc(why)}), so there is no estimate</span></div>"
        )
    # the headline is the smoothed estimate (streaming.smoothing); the window's own beside it
    s = row.get("smoothed_score", row["score"])
    label = row.get("smoothed_label", row["label"])
    conf = row.get("smoothed_confidence", row["confidence"])
    pos = (s + 3) / 6 * 100
    return (
        f"<div class='headline' data-state='estimate' style='font-size:1.6em'><b>{label}</b> &nbsp; score {s:+.2f} "
        f"<span style='font-size:0.6em;color:#555'>(-3 very negative .. +3 very positive), confidence "
        f"{conf:.2f}, smoothed over the latest windows; the latest alone: {row['label']} "
        f"{row['score']:+.2f} ({row['confidence']:.2f}), window {row['t_start']:.0f}-{row['t_end']:.0f} s</span></div>"
        f"<div style='position:relative;height:10px;background:linear-gradient(90deg,#d62728,#9e9e9e,#1f77b4);"
        f"border-radius:5px;margin:4px 0'><div style='position:absolute;left:calc({pos:.1f}% - 3px);top:-3px;"
        f"width:6px;height:16px;background:#000;border-radius:2px'></div></div>"
    )


def _md(text: str) -> str:
    """Text safe inside Markdown (no emphasis, links or HTML from what was recognised)."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>])", r"\\\1", text)


def transcript_md(committed: list, partial: list, span_s: float = TRANSCRIPT_SPAN_S) -> str:
    """The transcript panel: the committed words of the last ``span_s`` seconds, then the
    partial tail (may still change) in italics; words not trusted as said are struck out,
    with the reasons listed below."""
    if not committed and not partial:
        return "*(no speech recognised yet)*"
    out, reasons = [], {}
    for w in committed:
        if w.suspect:
            out.append(f"~~{_md(w.text)}~~")
            reasons[w.suspect] = reasons.get(w.suspect, 0) + 1
        else:
            out.append(_md(w.text))
    body = " ".join(out)
    tail = [w for w in partial if not w.suspect]
    if tail:
        body += f" _{' '.join(_md(w.text) for w in tail)}_ *(partial, may still change)*"
    head = f"**Transcript, last {span_s:.0f} s**  \n"
    if reasons:
        body += "  \n<small>struck out, not trusted as said and not read by the model: " + "; ".join(
            f"{_md(r)} ({n} word{'s' * (n > 1)})" for r, n in reasons.items()) + "</small>"
    return head + body


class Views:
    """The output components of a session, and how a session fills them; ``prefix`` names
    their elem_ids (``{prefix}-score``, ``-health``, ``-transcript``, ``-status``)."""

    def __init__(self, gr, prefix: str = "live"):
        self.score = gr.HTML(score_html(None), elem_id=f"{prefix}-score")
        self.label = gr.Label(num_top_classes=3, label="Sentiment confidences")
        self.health = gr.HTML(health_html(None), elem_id=f"{prefix}-health")
        self.transcript = gr.Markdown("*(no speech recognised yet)*", label="Transcript", elem_id=f"{prefix}-transcript")
        self.plot = gr.Plot(label="Timeline")
        self.status = gr.Markdown("", elem_id=f"{prefix}-status")

    @property
    def components(self):
        return [self.score, self.label, self.health, self.transcript, self.plot, self.status]

    @staticmethod
    def values(session, gr, force: bool = False):
        """New values for ``components``; ``gr.skip()`` where nothing changed."""
        if session is None:
            return [score_html(None), None, health_html(None), transcript_md([], []), None, ""]
        key = (len(session.rows), session.latest() and session.latest()["t_end"], tuple(sorted(session.errors.items())))
        if not force and getattr(session, "_rendered", None) == key:
            return [gr.skip()] * 6
        session._rendered = key
        row = session.latest()
        from streaming.plot import timeline_figure

        rows = session.rows[-120:]
        fig = timeline_figure(rows, session.faults.timeline(), horizon=90) if rows else None
        label = None if row is None or row.get("no_data") else row["confidences"]
        return [score_html(row), label, health_html(row, session.errors), transcript_md(*session.transcript_view()),
                fig, status_md(session)]


def status_md(session) -> str:
    """Latency, the transport's, the server's and the recogniser's lag (delivery and
    processing behind the media, not a sensor fault), frames skipped to keep up, and input
    errors."""
    lat = session.latency()
    row = session.latest()
    parts = []
    if lat:
        parts.append(f"window latency: last {lat['last']:.0f} ms, p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms "
                     f"over {min(len(session.rows), 300)} windows")
    if row is not None:
        lag = row.get("lag", {})
        server = lag.get("server")
        asr = lag.get("recogniser")
        transport = lag.get("transport")
        bits = []
        if transport is not None and transport >= 0.05:  # shown to 0.1 s: on time is not news
            bits.append(f"input arriving {transport:.1f} s late")
        if server is not None:
            bits.append(f"server {server:.1f} s behind")
        if asr is not None:
            bits.append(f"recogniser {asr:.1f} s behind")
        if session.frames_skipped:
            bits.append(f"{session.frames_skipped} camera frames skipped to keep up")
        if bits:
            parts.append("lag (delivery and processing, not the sensors): " + ", ".join(bits))
    if session.errors:
        parts.append("**input problems:** " + "; ".join(f"{k}: {_md(v)}" for k, v in session.errors.items()))
    return "  \n".join(parts)


class App:
    """Shared, read-only parts (model, recogniser weights) and the session factory.
    ``clock_factory()``, when given, makes each new session's clock (a callable giving
    seconds on the pipeline clock, e.g. to follow a test's media time); None: each session
    counts wall-clock seconds from its creation (``LiveSession``'s default)."""

    def __init__(self, model=None, asr_model=None, window_s: float = 3.0, hop_s: float = 1.0, asr: bool = True,
                 clock_factory=None):
        import threading

        from models.runtime import SentimentModel

        self.model = model or SentimentModel.load()
        # load the text and audio extractors now, not inside the first live window (seconds)
        self.model.text_features("warm up")
        self.model.audio_features(np.zeros(16000, np.float32))
        self.window_s, self.hop_s = window_s, hop_s
        self._asr_model = asr_model
        self.asr = asr
        self.clock_factory = clock_factory
        self._live: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
        self._live_lock = threading.Lock()

    def new_asr(self):
        if not self.asr:
            return None
        from streaming.asr import StreamingASR

        if self._asr_model is None:
            self._asr_model = StreamingASR().model  # loaded once, shared by all sessions
        return StreamingASR(whisper=self._asr_model)

    def new_session(self, window_s: float | None = None, hop_s: float | None = None, asr_mode: str = "thread",
                    worker: bool = True):
        from streaming.session import LiveSession

        clock = self.clock_factory() if self.clock_factory is not None else None
        s = LiveSession(self.model, self.new_asr(), window_s or self.window_s, hop_s or self.hop_s, asr_mode,
                        clock=clock, worker=worker)
        _OPEN_SESSIONS.add(s)
        return s

    def live_session(self, key: str | None):
        """The live session of one browser tab (``key``: Gradio's session hash), made on its
        first input; the webcam's and the microphone's first events arrive together and must
        find the same one."""
        with self._live_lock:
            s = self._live.get(key) if key else None
            if s is None or s.closed:
                s = self.new_session()
                if key:
                    self._live[key] = s
            return s


#: Sessions not yet garbage-collected; closed at interpreter exit (stops capture workers and
#: recogniser threads before the interpreter tears down the libraries they run in).
_OPEN_SESSIONS: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    for s in list(_OPEN_SESSIONS):
        close_session(s)


def close_session(session) -> None:
    if session is not None:
        session.close()


def _export(s, stem: str):
    """(csv, jsonl) paths of a session's windows, or None with a warning when there is none."""
    import tempfile

    if s is None or not s.rows:
        gr.Warning("Nothing to export yet: no window has come out.")
        return None
    c, j = s.write_exports(tempfile.mkdtemp(prefix="export-"), stem)
    return [str(c), str(j)]


def build_demo(app: App | None = None, local_devices: bool = False, analyser: WindowAnalyser | None = None):
    import tempfile
    import time

    app = app or App()
    analyser = analyser or WindowAnalyser(app.model)
    local = None
    if local_devices:
        local = start_local_session(app)

    with gr.Blocks(title="Multimodal sentiment", delete_cache=(300, 900)) as demo:
        gr.Markdown("# Multimodal sentiment, robust to failing sensors\n" + NOTICE)
        session = gr.State(None, time_to_live=900, delete_callback=close_session)

        # ------------------------------------------------------------ live
        with gr.Tab("Live", elem_id="live-tab"):
            with gr.Row():
                with gr.Column(scale=2):
                    if local is None:
                        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="live-webcam")
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="live-mic")
                    else:
                        gr.Markdown("Capturing from this machine's devices (`--local-devices`).")
                    faults = gr.CheckboxGroup(FAULT_CHOICES, label="Inject faults (live)", elem_id="live-faults")
                    with gr.Row():
                        snr = gr.Slider(-10, 30, value=0, step=1, label="noise SNR (dB)")
                        delay = gr.Slider(0.2, 5, value=1.0, step=0.1, label="delay (s)")
                    with gr.Row():
                        win = gr.Number(app.window_s, label="window (s)", minimum=1, maximum=10, elem_id="live-window")
                        hop = gr.Number(app.hop_s, label="hop (s)", minimum=0.25, maximum=10, elem_id="live-hop")
                        restart = gr.Button("Apply window and hop", elem_id="live-apply")
                    settings_note = gr.Markdown(
                        f"Windows: {app.window_s:g} s every {app.hop_s:g} s. Faults and their sliders apply at once; "
                        "new window and hop lengths apply when you press the button (the windows so far are cleared).",
                        elem_id="live-settings")
                    with gr.Row():
                        export_btn = gr.Button("Export session (CSV + JSON Lines)", elem_id="live-export")
                    export_files = gr.File(label="Session export", file_count="multiple", elem_id="live-export-files")
                with gr.Column(scale=3):
                    live = Views(gr, "live")

            def ensure(s, request: gr.Request | None):
                if s is not None and not s.closed:
                    return s
                return app.live_session(getattr(request, "session_hash", None))

            def on_frame(frame, s, request: gr.Request):
                s = ensure(s, request)
                s.video(frame)
                return [s] + Views.values(s, gr)

            def on_audio(chunk, s, request: gr.Request):
                s = ensure(s, request)
                s.audio(chunk)
                return [s] + Views.values(s, gr)

            def on_tick(s):
                if s is None:
                    return [s] + [gr.skip()] * 6
                s.tick()
                return [s] + Views.values(s, gr)

            def on_faults(names, snr_db, delay_s, s, request: gr.Request):
                s = ensure(s, request) if local is None else local
                s.set_faults(names, snr=snr_db, delay=delay_s)
                return s if local is None else gr.skip()

            def on_apply(w, h, s, request: gr.Request):
                s = (ensure(s, request) if local is None else local)
                try:
                    s.configure(w, h)
                except (TypeError, ValueError) as e:
                    gr.Warning(f"Window and hop not changed: {e}")
                    return [s if local is None else gr.skip(), gr.skip()] + [gr.skip()] * 6
                note = (f"Windows: {s.cfg.window_s:g} s every {s.cfg.hop_s:g} s, since {time.strftime('%H:%M:%S')} "
                        "(the earlier windows were cleared).")
                return [s if local is None else gr.skip(), note] + Views.values(s, gr, force=True)

            def on_export(s):
                return _export(local if local is not None else s, f"live-{time.strftime('%Y%m%d-%H%M%S')}")

            outs = [session] + live.components
            if local is None:
                cam.stream(on_frame, [cam, session], outs, stream_every=0.2, time_limit=3600, concurrency_limit=None,
                           api_name="stream_frame", show_progress="hidden")
                mic.stream(on_audio, [mic, session], outs, stream_every=0.5, time_limit=3600, concurrency_limit=None,
                           api_name="stream_audio", show_progress="hidden")
                gr.Timer(1.0).tick(on_tick, [session], outs, show_progress="hidden", api_visibility="private")
            else:
                gr.Timer(1.0).tick(lambda: Views.values(local, gr), None, live.components, show_progress="hidden")
            restart.click(on_apply, [win, hop, session], [session, settings_note] + live.components, show_progress="hidden")
            for c in (faults, snr, delay):
                c.change(on_faults, [faults, snr, delay, session], [session], show_progress="hidden")
            export_btn.click(on_export, [session], [export_files], show_progress="hidden")

        # ------------------------------------------------------------ replay
        with gr.Tab("Replay (failure simulator)", elem_id="replay-tab"):
            replay_state = gr.State(None, time_to_live=900, delete_callback=close_session)
            with gr.Row():
                with gr.Column(scale=2):
                    video = gr.Video(sources=["upload"], label="Recording (video with sound, or audio)", elem_id="replay-video")
                    demo_btn = gr.Button("Build a demo clip from the data set", visible=demo_clip_available())
                    spec = gr.Textbox(label="Scheduled faults", placeholder="vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9")
                    realtime = gr.Checkbox(True, label="real-time pace (the recording plays along)")
                    go = gr.Button("Replay", variant="primary", elem_id="replay-go")
                    replay_files = gr.File(label="Replay export", file_count="multiple", elem_id="replay-export-files")
                    replay_export = gr.Button("Export replay (CSV + JSON Lines)", elem_id="replay-export")
                with gr.Column(scale=3):
                    rviews = Views(gr, "replay")

            def on_demo_clip():
                from streaming.democlip import build_clip

                path = tempfile.mkdtemp(prefix="demo-") + "/demo.mp4"
                build_clip(path)
                return path

            def on_replay(path, spec_text, rt, s):
                from streaming.faults import parse_spec
                from streaming.sources import SourceError

                close_session(s)
                if not path:
                    raise gr.Error("Upload a recording first (or build the demo clip).")
                try:
                    parse_spec(spec_text)
                except ValueError as e:
                    raise gr.Error(f"Scheduled faults: {e}") from None
                try:
                    s = start_replay(app, path, spec_text, rt)
                except (SourceError, ValueError, OSError) as e:
                    raise gr.Error(f"Cannot replay {os.path.basename(str(path))}: {replay_problem(e)}") from None
                return [s, None] + Views.values(s, gr, force=True)

            def on_replay_tick(s):
                return [s] + (Views.values(s, gr) if s is not None else [gr.skip()] * 6)

            def on_export_replay(s):
                return _export(s, f"replay-{getattr(s, 'name', 'recording')}")

            demo_btn.click(on_demo_clip, None, [video])
            # the recording plays along in the page when the replay runs at real-time pace
            play = ("(path, spec, rt, s) => { const v = document.querySelector('#replay-video video');"
                    " if (v && rt) { v.currentTime = 0; v.play().catch(() => {}); } return [path, spec, rt, s]; }")
            go.click(on_replay, [video, spec, realtime, replay_state], [replay_state, replay_files] + rviews.components,
                     js=play, show_progress="hidden")
            gr.Timer(1.0).tick(on_replay_tick, [replay_state], [replay_state] + rviews.components, show_progress="hidden", api_visibility="private")
            replay_export.click(on_export_replay, [replay_state], [replay_files], show_progress="hidden")

        # ------------------------------------------------------------ one window
        with gr.Tab("One window", elem_id="window-tab"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Transcript", placeholder="what was said (one window's words: about a sentence)")
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech (up to 30 s)")
                    image = gr.Image(sources=["webcam", "upload"], type="filepath", label="Face")
                    analyse = gr.Button("Analyse", variant="primary")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(SENTIMENT_CLASSES), label="Fused sentiment")
                    summary = gr.Markdown(elem_id="window-summary")
                    table = gr.Dataframe(
                        headers=["modality", "label", "score", "confidence", "emotions, grouped by the sentiment they count for"],
                        label="Each modality alone",
                        interactive=False,
                        wrap=True,
                        column_widths=["10%", "11%", "9%", "14%", "56%"],
                    )
            # preprocess=False: the uploads arrive as they are and the analyser reads them, so a
            # file that is not audio or not a picture gets a note on the page, not a bare error
            analyse.click(analyser, [text, audio, image], [label, summary, table], api_name="analyse", preprocess=False)
    return demo


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
    except Exception:  # noqa: BLE001 - no data folder configured
        return False


def start_replay(app: App, path: str, spec: str = "", realtime: bool = True):
    """A session fed by a replay of ``path`` on a thread, with scheduled faults ``spec``.
    SourceError (before anything starts) for a file that cannot be read; a failure during
    the replay is shown as the session's "replay" error."""
    import threading

    from streaming.faults import parse_spec
    from streaming.sources import FileReplay, SourceError

    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise SourceError(f"{os.path.basename(path)} is empty (0 bytes)")
    src = FileReplay(path, sink=None, realtime=realtime)  # SourceError for an unreadable file
    s = app.new_session(asr_mode="sync", worker=False)
    s.name = Path(path).stem
    s.faults.faults = parse_spec(spec)

    def run():
        end = 0.0
        try:
            for item in src.items():
                if s.closed:
                    return
                s.push(item)
                end = max(end, item.t)
        except Exception as e:  # noqa: BLE001 - shown on the page
            s.errors["replay"] = f"the replay stopped: {replay_problem(e)}"
        s.finish(max(end, src.duration))

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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="multimodal sentiment demo")
    ap.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to bind (default 127.0.0.1; a Hugging Face Space sets GRADIO_SERVER_NAME)",
    )
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--local-devices", action="store_true", help="capture from this machine's webcam and microphone")
    ap.add_argument("--window", type=float, default=3.0, help="window length, s")
    ap.add_argument("--hop", type=float, default=1.0, help="hop between windows, s")
    ap.add_argument("--no-asr", action="store_true", help="no speech recognition")
    args = ap.parse_args(argv)
    app = App(window_s=args.window, hop_s=args.hop, asr=not args.no_asr)
    demo = build_demo(app, local_devices=args.local_devices)
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port)
