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

import numpy as np

from models.types import SENTIMENT_CLASSES, Modality, WindowFeatures

NOTICE = (
    "This estimates the sentiment a person *expresses* in words, voice and face. "
    "It is not a diagnosis and says nothing certain about how anyone feels. Nothing you send is stored."
)
MAX_AUDIO_SECONDS = 30.0


class WindowAnalyser:
    """Turns the raw inputs of one window into a result table (used by the UI and tests)."""

    def __init__(self, model=None):
        from models.features.vision import FaceAnalyzer
        from models.runtime import SentimentModel

        self.model = model or SentimentModel.load()
        self.faces = FaceAnalyzer(static=True)

    def features(self, text: str | None, audio, image) -> tuple[WindowFeatures, list[str]]:
        """(features, notes on what was left out and why)."""
        from models.features.audio import SAMPLE_RATE, to_mono_16k

        notes = []
        t = self.model.text_features(text or "")
        if t is None:
            notes.append("text: none given")
        a = None
        if audio is not None:
            rate, samples = audio
            try:
                x = to_mono_16k(samples, rate)
                x = x[-int(MAX_AUDIO_SECONDS * SAMPLE_RATE) :]
                if np.sqrt(np.mean(x**2)) < 1e-3:
                    notes.append("audio: silent, left out")
                else:
                    a = self.model.audio_features(x)
            except ValueError as e:
                notes.append(f"audio: {e}")
        else:
            notes.append("audio: none given")
        v = None
        if image is not None:
            try:
                obs = self.faces(np.asarray(image))
                if obs.has_face:
                    v = self.model.face_features([obs.crop])
                    if obs.n_faces > 1:
                        notes.append(f"vision: {obs.n_faces} faces, the largest is read")
                else:
                    notes.append("vision: no face found")
            except ValueError as e:
                notes.append(f"vision: {e}")
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
                top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e.detail.items(), key=lambda kv: -kv[1])[:3])
                conf = f"{e.confidence:.2f}" + ("" if e.in_domain >= 0.995 else f" (in-domain {e.in_domain:.2f})")
                rows.append([m.value, e.label, f"{e.score:+.2f}", conf, top])
        summary = (
            f"**{r.label}** (score {r.score:+.2f} on -3..3, confidence {r.confidence:.2f}); "
            f"modalities used: {', '.join(m.value for m in r.used) or 'none, this is the prior'}"
        )
        if notes:
            summary += "  \n" + "; ".join(notes)
        return r.confidences(), summary, rows


# ====================================================================== live
FAULT_CHOICES = [
    "vision:drop", "vision:freeze", "vision:blackout", "vision:noise", "vision:delay",
    "audio:drop", "audio:freeze", "audio:blackout", "audio:noise", "audio:delay",
    "text:outage",
]
STATE_STYLE = {"OK": "#1b7f3b", "DEGRADED": "#b86e00", "DROPPED": "#b3261e"}


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
            f"<div style='font-size:0.8em;color:#555;min-height:1.2em'>{reason}</div>{est}</div>"
        )
    return "<div style='display:flex;gap:4px'>" + "".join(cards) + "</div>"


def score_html(row: dict | None) -> str:
    if row is None:
        return "<div style='font-size:1.1em;color:#666'>waiting for the first window...</div>"
    # the headline is the smoothed estimate (streaming.smoothing); the window's own beside it
    s = row.get("smoothed_score", row["score"])
    label = row.get("smoothed_label", row["label"])
    conf = row.get("smoothed_confidence", row["confidence"])
    pos = (s + 3) / 6 * 100
    return (
        f"<div style='font-size:1.6em'><b>{label}</b> &nbsp; score {s:+.2f} "
        f"<span style='font-size:0.6em;color:#555'>(-3 very negative .. +3 very positive), confidence "
        f"{conf:.2f}, smoothed over the latest windows; the latest alone: {row['label']} "
        f"{row['score']:+.2f} ({row['confidence']:.2f}), window {row['t_start']:.0f}-{row['t_end']:.0f} s</span></div>"
        f"<div style='position:relative;height:10px;background:linear-gradient(90deg,#d62728,#9e9e9e,#1f77b4);"
        f"border-radius:5px;margin:4px 0'><div style='position:absolute;left:calc({pos:.1f}% - 3px);top:-3px;"
        f"width:6px;height:16px;background:#000;border-radius:2px'></div></div>"
    )


def transcript_md(row: dict | None) -> str:
    if row is None or not (row["transcript"] or row["partial"]):
        return "*(no speech recognised yet)*"
    partial = f" _{row['partial']} (partial)_" if row["partial"] else ""
    return f"{row['transcript']}{partial}"


class Views:
    """The output components of a session, and how a session fills them."""

    def __init__(self, gr):
        self.score = gr.HTML(score_html(None))
        self.label = gr.Label(num_top_classes=3, label="Sentiment confidences")
        self.health = gr.HTML(health_html(None))
        self.transcript = gr.Markdown(transcript_md(None), label="Transcript")
        self.plot = gr.Plot(label="Timeline")
        self.latency = gr.Markdown("")

    @property
    def components(self):
        return [self.score, self.label, self.health, self.transcript, self.plot, self.latency]

    @staticmethod
    def values(session, gr, force: bool = False):
        """New values for ``components``; ``gr.skip()`` where nothing changed."""
        n = -1 if session is None else len(session.rows)
        if session is None:
            return [score_html(None), None, health_html(None), transcript_md(None), None, ""]
        if not force and getattr(session, "_rendered", None) == n:
            return [gr.skip()] * 6
        session._rendered = n
        row = session.latest()
        from streaming.plot import timeline_figure

        fig = timeline_figure(session.rows[-120:], session.faults.timeline(), horizon=90) if session.rows else None
        lat = session.latency()
        lat_md = (
            f"window latency: last {lat['last']:.0f} ms, p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms "
            f"over {min(len(session.rows), 300)} windows"
            if lat
            else ""
        )
        if session.errors:
            lat_md += "  \n" + "; ".join(f"{k}: {v}" for k, v in session.errors.items())
        return [score_html(row), None if row is None else row["confidences"], health_html(row, session.errors), transcript_md(row), fig, lat_md]


class App:
    """Shared, read-only parts (model, recogniser weights) and the session factory.
    ``clock_factory()``, when given, makes each new session's clock (a callable giving
    seconds on the pipeline clock, e.g. to follow a test's media time); None: each session
    counts wall-clock seconds from its creation (``LiveSession``'s default)."""

    def __init__(self, model=None, asr_model=None, window_s: float = 3.0, hop_s: float = 1.0, asr: bool = True,
                 clock_factory=None):
        from models.runtime import SentimentModel

        self.model = model or SentimentModel.load()
        # load the text and audio extractors now, not inside the first live window (seconds)
        self.model.text_features("warm up")
        self.model.audio_features(np.zeros(16000, np.float32))
        self.window_s, self.hop_s = window_s, hop_s
        self._asr_model = asr_model
        self.asr = asr
        self.clock_factory = clock_factory

    def new_asr(self):
        if not self.asr:
            return None
        from streaming.asr import StreamingASR

        if self._asr_model is None:
            self._asr_model = StreamingASR().model  # loaded once, shared by all sessions
        return StreamingASR(whisper=self._asr_model)

    def new_session(self, window_s: float | None = None, hop_s: float | None = None, asr_mode: str = "thread"):
        from streaming.session import LiveSession

        clock = self.clock_factory() if self.clock_factory is not None else None
        s = LiveSession(self.model, self.new_asr(), window_s or self.window_s, hop_s or self.hop_s, asr_mode, clock=clock)
        _OPEN_SESSIONS.add(s)
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


def build_demo(app: App | None = None, local_devices: bool = False, analyser: WindowAnalyser | None = None):
    import tempfile

    import gradio as gr

    app = app or App()
    analyser = analyser or WindowAnalyser(app.model)
    local = None
    if local_devices:
        local = start_local_session(app)

    with gr.Blocks(title="Multimodal sentiment", delete_cache=(300, 900)) as demo:
        gr.Markdown("# Multimodal sentiment, robust to failing sensors\n" + NOTICE)
        session = gr.State(None, time_to_live=900, delete_callback=close_session)

        # ------------------------------------------------------------ live
        with gr.Tab("Live"):
            with gr.Row():
                with gr.Column(scale=2):
                    if local is None:
                        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone")
                    else:
                        gr.Markdown("Capturing from this machine's devices (`--local-devices`).")
                    faults = gr.CheckboxGroup(FAULT_CHOICES, label="Inject faults (live)")
                    with gr.Row():
                        snr = gr.Slider(-10, 30, value=0, step=1, label="noise SNR (dB)")
                        delay = gr.Slider(0.2, 5, value=1.0, step=0.1, label="delay (s)")
                    with gr.Row():
                        win = gr.Number(app.window_s, label="window (s)", minimum=1, maximum=10)
                        hop = gr.Number(app.hop_s, label="hop (s)", minimum=0.25, maximum=10)
                        restart = gr.Button("Apply and restart")
                    with gr.Row():
                        export_btn = gr.Button("Export session (CSV + JSON)")
                    export_files = gr.File(label="Session export", file_count="multiple")
                with gr.Column(scale=3):
                    live = Views(gr)

            def ensure(s, w=None, h=None):
                return s if s is not None and not s.closed else app.new_session(w, h)

            def on_frame(frame, s):
                s = ensure(s)
                s.video(frame)
                return [s] + Views.values(s, gr)

            def on_audio(chunk, s):
                s = ensure(s)
                s.audio(chunk)
                return [s] + Views.values(s, gr)

            def on_tick(s):
                if s is None:
                    return [s] + [gr.skip()] * 6
                s.tick()
                return [s] + Views.values(s, gr)

            def on_faults(names, snr_db, delay_s, s):
                s = ensure(s) if local is None else local
                s.set_faults(names, snr=snr_db, delay=delay_s)
                return s if local is None else gr.skip()

            def on_restart(w, h, names, snr_db, delay_s, s):
                close_session(s)
                s = app.new_session(w, h)
                s.set_faults(names, snr=snr_db, delay=delay_s)
                return [s] + Views.values(s, gr, force=True)

            def on_export(s):
                s = local if local is not None else s
                if s is None or not s.rows:
                    raise gr.Error("nothing to export yet")
                c, j = s.write_exports(tempfile.mkdtemp(prefix="session-"))
                return [str(c), str(j)]

            outs = [session] + live.components
            if local is None:
                cam.stream(on_frame, [cam, session], outs, stream_every=0.2, time_limit=3600, concurrency_limit=None, api_name="stream_frame")
                mic.stream(on_audio, [mic, session], outs, stream_every=0.5, time_limit=3600, concurrency_limit=None, api_name="stream_audio")
                gr.Timer(1.0).tick(on_tick, [session], outs, show_progress="hidden", api_visibility="private")
                restart.click(on_restart, [win, hop, faults, snr, delay, session], outs)
            else:
                gr.Timer(1.0).tick(lambda: Views.values(local, gr), None, live.components, show_progress="hidden")
            for c in (faults, snr, delay):
                c.change(on_faults, [faults, snr, delay, session], [session])
            export_btn.click(on_export, [session], [export_files])

        # ------------------------------------------------------------ replay
        with gr.Tab("Replay (failure simulator)"):
            replay_state = gr.State(None, time_to_live=900, delete_callback=close_session)
            with gr.Row():
                with gr.Column(scale=2):
                    video = gr.Video(sources=["upload"], label="Recording (video with sound, or audio)")
                    demo_btn = gr.Button("Build a demo clip from the data set", visible=demo_clip_available())
                    spec = gr.Textbox(label="Scheduled faults", placeholder="vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9")
                    realtime = gr.Checkbox(True, label="real-time pace")
                    go = gr.Button("Replay", variant="primary")
                    replay_files = gr.File(label="Replay export", file_count="multiple")
                    replay_export = gr.Button("Export replay (CSV + JSON)")
                with gr.Column(scale=3):
                    rviews = Views(gr)

            def on_demo_clip():
                from streaming.democlip import build_clip

                path = tempfile.mkdtemp(prefix="demo-") + "/demo.mp4"
                build_clip(path)
                return path

            def on_replay(path, spec_text, rt, s):
                from streaming.faults import parse_spec

                close_session(s)
                if not path:
                    raise gr.Error("upload a recording first (or build the demo clip)")
                try:
                    parse_spec(spec_text)
                except ValueError as e:
                    raise gr.Error(str(e)) from None
                s = start_replay(app, path, spec_text, rt)
                return [s] + Views.values(s, gr, force=True)

            def on_replay_tick(s):
                return [s] + (Views.values(s, gr) if s is not None else [gr.skip()] * 6)

            demo_btn.click(on_demo_clip, None, [video])
            go.click(on_replay, [video, spec, realtime, replay_state], [replay_state] + rviews.components)
            gr.Timer(1.0).tick(on_replay_tick, [replay_state], [replay_state] + rviews.components, show_progress="hidden", api_visibility="private")
            replay_export.click(on_export_replay, [replay_state], [replay_files])

        # ------------------------------------------------------------ one window
        with gr.Tab("One window"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Transcript", placeholder="what was said")
                    audio = gr.Audio(sources=["microphone", "upload"], type="numpy", label="Speech (up to 30 s)")
                    image = gr.Image(sources=["webcam", "upload"], type="numpy", label="Face")
                    analyse = gr.Button("Analyse", variant="primary")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(SENTIMENT_CLASSES), label="Fused sentiment")
                    summary = gr.Markdown()
                    table = gr.Dataframe(
                        headers=["modality", "label", "score", "confidence", "top emotions"],
                        label="Each modality alone",
                        interactive=False,
                    )
            analyse.click(analyser, [text, audio, image], [label, summary, table], api_name="analyse")
    return demo


def on_export_replay(s):
    import tempfile

    import gradio as gr

    if s is None or not s.rows:
        raise gr.Error("nothing to export yet")
    c, j = s.write_exports(tempfile.mkdtemp(prefix="replay-"))
    return [str(c), str(j)]


def demo_clip_available() -> bool:
    import shutil

    from models.paths import data_root

    try:
        return shutil.which("espeak-ng") is not None and (data_root() / "vision" / "fer2013_test.npz").is_file()
    except Exception:  # noqa: BLE001 - no data folder configured
        return False


def start_replay(app: App, path: str, spec: str = "", realtime: bool = True):
    """A session fed by a replay of ``path`` on a thread, with scheduled faults ``spec``."""
    from streaming.faults import parse_spec
    from streaming.sources import FileReplay

    s = app.new_session(asr_mode="sync")
    s.faults.faults = parse_spec(spec)
    src = FileReplay(path, sink=None, realtime=realtime)

    def run():
        end = 0.0
        for item in src.items():
            if s.closed:
                return
            s.push(item)
            end = max(end, item.t)
        s.finish(max(end, src.duration))

    import threading

    threading.Thread(target=run, name="replay", daemon=True).start()
    return s


def start_local_session(app: App):
    """A session fed by this machine's camera and microphone; a missing device is reported
    (and its modality DROPPED), never raised."""
    from streaming.sources import LocalCamera, LocalMicrophone

    s = app.new_session()
    cam = LocalCamera(sink=s.push, clock=s.clock, on_error=lambda m: s.source_error("vision", m))
    mic = LocalMicrophone(sink=s.push, clock=s.clock, on_error=lambda m: s.source_error("audio", m))
    for w in (cam, mic):
        w.start()
        s.workers.append(w)
    for name, w in (("vision", cam), ("audio", mic)):
        if w.error:
            print(f"{name}: {w.error}")
            s.source_error(name, w.error)

    import threading

    def ticker():
        import time

        while not s.closed:
            s.tick()
            time.sleep(0.25)

    threading.Thread(target=ticker, name="local-ticker", daemon=True).start()
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
