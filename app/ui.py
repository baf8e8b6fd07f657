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

This module lays the page out and wires its events; the parts live apart: ``app.sessions``
(``App``, replay and local-device sessions), ``app.views`` (what a session looks like on
the page), ``app.window`` (the one-window analysis).
"""

from __future__ import annotations

import argparse
import os

import gradio as gr  # at module level: the handlers' ``gr.Request`` hints resolve here

from app.sessions import App, ServerBusy, close_session, demo_clip_available, replay_problem, start_local_session, start_replay
from app.views import Views, health_html, score_html, status_md, transcript_md
from app.window import WindowAnalyser, emotion_summary
from models.fusion import DEFAULT_FUSION, FUSIONS
from models.providers import DEVICES
from models.types import SENTIMENT_CLASSES
from streaming import limits

# the app's parts, imported from here by app.py, the tests and the checks
__all__ = [
    "App",
    "ServerBusy",
    "Views",
    "WindowAnalyser",
    "build_demo",
    "close_session",
    "demo_clip_available",
    "emotion_summary",
    "health_html",
    "main",
    "replay_problem",
    "score_html",
    "start_local_session",
    "start_replay",
    "status_md",
    "transcript_md",
]

NOTICE = (
    "This estimates the sentiment a person *expresses* in words, voice and face. "
    "It is not a diagnosis and says nothing certain about how anyone feels. Nothing you send is stored."
)

FAULT_CHOICES = [
    "vision:drop",
    "vision:freeze",
    "vision:blackout",
    "vision:noise",
    "vision:delay",
    "audio:drop",
    "audio:freeze",
    "audio:blackout",
    "audio:noise",
    "audio:delay",
    "text:outage",
]


def _export(s, stem: str):
    """(csv, jsonl) paths of a session's windows, or None with a warning when there is none.
    Written in Gradio's upload folder, so that its cache cleaner (``delete_cache``) removes them."""
    import tempfile

    from gradio.utils import get_upload_folder

    if s is None or not s.results:
        gr.Warning("Nothing to export yet: no window has come out.")
        return None
    os.makedirs(get_upload_folder(), exist_ok=True)
    c, j = s.write_exports(tempfile.mkdtemp(prefix="export-", dir=get_upload_folder()), stem)
    return [str(c), str(j)]


def _uploaded_only(payload):
    """``payload`` as the page sent it, or None when it names a file that Gradio's upload route
    did not write (a path outside its upload folder). Gradio checks the path of a payload marked
    ``meta._type == "gradio.FileData"`` only; a picture's ImageData without the mark reaches the
    Image preprocessing, and a ``preprocess=False`` handler, with any path a client wrote."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    path = payload.get("path") if isinstance(payload, dict) else None
    if path is not None and (not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder())):
        return None
    return payload


def _webcam_frame(payload):
    """The RGB frame of a streamed webcam payload (the browser sends a data: URL; None: no
    frame). ValueError, with the reason, for a payload that is not a picture or names a file
    Gradio's upload route did not write."""
    from app.window import _read_image_payload

    if payload is None:
        return None
    if _uploaded_only(payload) is None:
        raise ValueError("the frame names a file that was not uploaded")
    return _read_image_payload(payload)


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
                        mic = gr.Audio(
                            sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="live-mic"
                        )
                    else:
                        gr.Markdown("Capturing from this machine's devices (`--local-devices`).")
                    fusion = gr.Dropdown(
                        app.fusions,
                        value=app.default_fusion,
                        label="Fusion model",
                        info="LNLN (default), DashFusion or HME: the next windows use it (assets/MODEL_CARD.md compares them)",
                        elem_id="live-fusion",
                        interactive=len(app.fusions) > 1,
                    )
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
                        elem_id="live-settings",
                    )
                    with gr.Row():
                        export_btn = gr.Button("Export session (CSV + JSON Lines)", elem_id="live-export")
                    export_files = gr.File(label="Session export", file_count="multiple", elem_id="live-export-files")
                with gr.Column(scale=3):
                    live = Views(gr, "live")

            def ensure(s, request: gr.Request | None):
                if s is not None and not s.closed:
                    return s
                try:
                    return app.live_session(getattr(request, "session_hash", None))
                except ServerBusy as e:  # the page shows it; the stream ends
                    raise gr.Error(str(e), title="Server busy") from None

            def on_frame(frame, s, request: gr.Request):
                # the views go out with the microphone's chunks and the 1 s tick: five frame
                # events a second each filling six outputs cost the server more than the
                # windows' fusion
                s = ensure(s, request)
                try:
                    s.video(_webcam_frame(frame))
                except ValueError as e:  # an unusable frame: the camera's health says so
                    s.reject("vision", str(e))
                return s

            def on_audio(chunk, s, request: gr.Request):
                # the views but the timeline go out with each chunk (words show as they are
                # decoded), the timeline with the 1 s tick. Plain values only: Gradio keeps a
                # component per update (``gr.skip()`` included) in the session until it ends
                s = ensure(s, request)
                s.audio(chunk)
                return [s] + Views.quick_values(s, gr)

            def on_tick(s):
                if s is not None:
                    s.tick()
                return [s] + Views.values(s, gr)

            def on_faults(names, snr_db, delay_s, s, request: gr.Request):
                s = ensure(s, request) if local is None else local
                s.set_faults(names, snr=snr_db, delay=delay_s)
                return s if local is None else gr.skip()

            def on_fusion(name, s, request: gr.Request):
                s = ensure(s, request) if local is None else local
                try:
                    app.set_fusion(getattr(request, "session_hash", None), s, name)
                except ValueError as e:
                    gr.Warning(f"Fusion model not changed: {e}")
                return s if local is None else gr.skip()

            def on_apply(w, h, s, request: gr.Request):
                s = ensure(s, request) if local is None else local
                try:
                    s.configure(w, h)
                except (TypeError, ValueError) as e:
                    gr.Warning(f"Window and hop not changed: {e}")
                    return [s if local is None else gr.skip(), gr.skip()] + [gr.skip()] * 6
                note = (
                    f"Windows: {s.cfg.window_s:g} s every {s.cfg.hop_s:g} s, since {time.strftime('%H:%M:%S')} "
                    "(the earlier windows were cleared)."
                )
                return [s if local is None else gr.skip(), note] + Views.values(s, gr, force=True)

            def on_export(s):
                return _export(local if local is not None else s, f"live-{time.strftime('%Y%m%d-%H%M%S')}")

            outs = [session] + live.components
            if local is None:
                # no time_limit: Gradio 6.31 waits for each next input with a sleep of the time
                # limit's length that it never cancels (queueing.wait_for_event_or_timeout), so
                # with an hour's limit every frame and chunk left a sleeping task for up to an
                # hour: the server grew by about 4.5 MB a minute per live session
                # (docs/reliability.md). Without one that wait is 30 s; idle sessions are closed
                # by the app's reaper (streaming.limits.IDLE_TIMEOUT_S)
                cam.stream(
                    on_frame,
                    [cam, session],
                    [session],
                    stream_every=0.2,
                    time_limit=None,
                    concurrency_limit=None,
                    api_name="stream_frame",
                    show_progress="hidden",
                    preprocess=False,  # the payload is checked and decoded by _webcam_frame
                )
                mic.stream(
                    on_audio,
                    [mic, session],
                    [session] + live.quick,
                    stream_every=0.5,
                    time_limit=None,
                    concurrency_limit=None,
                    api_name="stream_audio",
                    show_progress="hidden",
                )
                gr.Timer(1.0).tick(on_tick, [session], outs, show_progress="hidden", api_visibility="private")
            else:
                gr.Timer(1.0).tick(lambda: Views.values(local, gr), None, live.components, show_progress="hidden")
            restart.click(on_apply, [win, hop, session], [session, settings_note] + live.components, show_progress="hidden")
            for c in (faults, snr, delay):
                c.change(on_faults, [faults, snr, delay, session], [session], show_progress="hidden")
            fusion.change(on_fusion, [fusion, session], [session], show_progress="hidden", api_name="set_fusion")
            export_btn.click(on_export, [session], [export_files], show_progress="hidden")

        # ------------------------------------------------------------ replay
        with gr.Tab("Replay (failure simulator)", elem_id="replay-tab"):
            replay_state = gr.State(None, time_to_live=900, delete_callback=close_session)
            with gr.Row():
                with gr.Column(scale=2):
                    video = gr.Video(sources=["upload"], label="Recording (video with sound, or audio)", elem_id="replay-video")
                    demo_btn = gr.Button("Build a demo clip from the data set", visible=demo_clip_available())
                    spec = gr.Textbox(
                        label="Scheduled faults", placeholder="vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9"
                    )
                    realtime = gr.Checkbox(True, label="real-time pace (the recording plays along)")
                    go = gr.Button("Replay", variant="primary", elem_id="replay-go")
                    replay_files = gr.File(label="Replay export", file_count="multiple", elem_id="replay-export-files")
                    replay_export = gr.Button("Export replay (CSV + JSON Lines)", elem_id="replay-export")
                with gr.Column(scale=3):
                    rviews = Views(gr, "replay")

            def on_demo_clip():
                from gradio.utils import get_upload_folder

                from streaming.democlip import build_clip

                os.makedirs(get_upload_folder(), exist_ok=True)
                path = tempfile.mkdtemp(prefix="demo-", dir=get_upload_folder()) + "/demo.mp4"
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
                except ServerBusy as e:
                    raise gr.Error(str(e), title="Server busy") from None
                except (SourceError, ValueError, OSError) as e:
                    raise gr.Error(f"Cannot replay {os.path.basename(str(path))}: {replay_problem(e)}") from None
                return [s, None] + Views.values(s, gr, force=True)

            def on_replay_tick(s):
                return [s] + Views.values(s, gr)

            def on_export_replay(s):
                return _export(s, f"replay-{getattr(s, 'name', 'recording')}")

            demo_btn.click(on_demo_clip, None, [video])
            # the recording plays along in the page when the replay runs at real-time pace
            play = (
                "(path, spec, rt, s) => { const v = document.querySelector('#replay-video video');"
                " if (v && rt) { v.currentTime = 0; v.play().catch(() => {}); } return [path, spec, rt, s]; }"
            )
            go.click(
                on_replay,
                [video, spec, realtime, replay_state],
                [replay_state, replay_files] + rviews.components,
                js=play,
                show_progress="hidden",
            )
            gr.Timer(1.0).tick(
                on_replay_tick,
                [replay_state],
                [replay_state] + rviews.components,
                show_progress="hidden",
                api_visibility="private",
            )
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
            def on_analyse(text, audio, image):  # the endpoint's parameters keep their names
                return analyser(text, _uploaded_only(audio), _uploaded_only(image))

            analyse.click(on_analyse, [text, audio, image], [label, summary, table], api_name="analyse", preprocess=False)
    return demo


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
    ap.add_argument(
        "--device",
        choices=DEVICES,
        default=os.environ.get("SENTIMENT_DEVICE", "cpu"),
        help="where the fusion and the recogniser run: cpu, cuda (an error without a GPU) or auto",
    )
    ap.add_argument(
        "--fusion",
        choices=list(FUSIONS),
        default=DEFAULT_FUSION,
        help="the fusion model new sessions start with (default lnln); the page offers every shipped one",
    )
    ap.add_argument("--no-engine", action="store_true", help="each session calls the model itself (no batching)")
    ap.add_argument(
        "--serve",
        choices=["embedded", "ray"],
        default="embedded",
        help="embedded: the in-process engine; ray: a Ray Serve deployment (pip install -r requirements-scale.txt)",
    )
    ap.add_argument("--address", help="with --serve ray: the Ray cluster to join (default: start a local one)")
    ap.add_argument(
        "--max-sessions",
        type=int,
        default=limits.MAX_SESSIONS,
        help=f"sessions at once; the next visitor is told the server is busy (default {limits.MAX_SESSIONS})",
    )
    ap.add_argument(
        "--idle-timeout",
        type=float,
        default=limits.IDLE_TIMEOUT_S,
        help=f"seconds without input after which a live session is closed (default {limits.IDLE_TIMEOUT_S:g})",
    )
    args = ap.parse_args(argv)
    engine = "ray" if args.serve == "ray" else not args.no_engine
    app = App(
        window_s=args.window,
        hop_s=args.hop,
        asr=not args.no_asr,
        engine=engine,
        device=args.device,
        address=args.address,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout,
        fusion=args.fusion,
    )
    demo = build_demo(app, local_devices=args.local_devices)
    launch(demo, args.host, args.port)


def launch(demo, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = limits.MAX_UPLOAD_MB, **kw):
    """Starts the server with the visitors' limits (``streaming.limits``): Gradio's queue holds
    at most ``QUEUE_MAX_SIZE`` waiting events (beyond it Gradio answers that the queue is
    full) and refuses uploads over ``max_upload_mb``. ``kw`` goes to ``Blocks.launch``."""
    demo.queue(default_concurrency_limit=4, max_size=limits.QUEUE_MAX_SIZE)
    return demo.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb", **kw)
