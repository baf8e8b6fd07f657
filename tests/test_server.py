"""The real Gradio server, started in-process on 127.0.0.1 and driven over HTTP the way the
browser drives it.

``gradio_client`` cannot call ``.stream()`` events, so the streaming tests speak Gradio's
queue protocol (6.x) themselves:

1. ``POST /gradio_api/queue/join`` with ``{"data": [...], "fn_index", "trigger_id",
   "session_hash", "event_data"}`` starts the event (the first input is in ``data``) and
   answers ``{"event_id"}``;
2. ``GET /gradio_api/queue/data?session_hash=...`` is a server-sent-event stream of JSON
   messages for every event of the session (``estimation``, ``process_starts``,
   ``process_streaming`` with ``output.data`` after each call, ``process_completed``,
   ``heartbeat``, ``close_stream``);
3. each later input is ``POST /gradio_api/stream/{event_id}`` with the same body (the
   server keeps only the newest one, runs the handler again and sends its outputs);
4. ``POST /gradio_api/stream/{event_id}/close`` ends the event.

Payloads are those of the browser: a streaming webcam sends ``{"url": "data:image/jpeg;
base64,..."}``; a streaming microphone uploads each chunk as a WAV file
(``POST /gradio_api/upload``) and sends the file's ``FileData``. ``gr.State`` inputs are
sent as ``null`` (the server holds the state).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.http_load import API, QueueSession, free_port  # noqa: E402
from app.http_load import frame_payload as _frame_payload  # noqa: E402
from app.http_load import wav_bytes as _wav  # noqa: E402


@pytest.fixture(scope="module")
def app():
    """The server's ``App`` (a test may set its ``clock_factory`` for the sessions it opens)."""
    from app.ui import App

    app = App()
    app.new_asr()  # loads the shared recogniser now, not inside the first streamed call
    app.model.text_features("warming up")  # the feature extractors load lazily: load them now
    app.model.audio_features(np.zeros(16000, np.float32))
    return app


@pytest.fixture(scope="module")
def server(app):
    """(base url, the Blocks) of a running server; closed after the module."""
    from app.ui import build_demo

    demo = build_demo(app)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}", demo
    finally:
        demo.close()
        # Gradio closes a session's gr.State (delete_callback) only long after the browser
        # leaves; close them now, or a recogniser thread still decoding when the interpreter
        # exits aborts it ("terminate called without an active exception", status 134)
        for session_hash in list(demo.state_holder.session_data):
            demo.state_holder.delete_state(session_hash)


@pytest.fixture(scope="module")
def http(server):
    import httpx

    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def config(http):
    r = http.get("/config")
    r.raise_for_status()
    return r.json()


def _html(value) -> str:
    """An HTML output value ("" for a skipped update)."""
    return value if isinstance(value, str) else ""


# ====================================================================== tests
def test_page_and_endpoints_are_served(server, http, config):
    url, _ = server
    assert url.startswith("http://127.0.0.1:")
    r = http.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "<html" in r.text.lower()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"stream_frame", "stream_audio", "analyse"} <= names
    info = http.get(f"{API}/info").json()
    assert "/analyse" in info["named_endpoints"]


@pytest.fixture(scope="module")
def frames():
    """Animated frames (slight sway, lighting drift, sensor noise) of a real FER-2013 test
    face that the face mesh finds, 5 per second."""
    from streaming.democlip import animate, pick_faces

    face = pick_faces(["happy"])[0]
    return animate(face, 60, np.random.default_rng(0))[::3]  # 15 fps -> 5 fps


class MediaClock:
    """The session clock of the streaming test: seconds of media the test has sent so far
    (set by the test before each input), so that windows follow the data, not the wall."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


from streaming.session import SETTLE_S  # noqa: E402

STREAM_S = 5.0  # seconds of media streamed: windows end at 3, 4 and 5 s (3 s long, 1 s hop)


def _window_end(score: str) -> float:
    """t_end of the window a score badge shows ("... window 0-3 s</span>")."""
    return float(score.split("window ")[1].split(" s</span>")[0].split("-")[1])


def test_streamed_webcam_and_microphone_produce_windows(app, server, http, config, frames, speech_clip):
    """The browser's two streams on a session whose clock is the media time sent: a frame
    every 0.2 s of media, a 0.5 s microphone chunk when its 0.5 s have passed. Each input is
    sent once the previous one was answered (as a browser's stream waits on a slow server),
    so every count below is the same on a fast and on a slow machine."""
    from models.features.audio import SAMPLE_RATE

    demo = server[1]
    q = QueueSession(http, config)
    rate = 48000  # what a browser's recorder usually captures at
    speech = np.concatenate([speech_clip, np.zeros(SAMPLE_RATE // 2, np.float32)])
    speech = np.tile(speech, 4)
    speech = np.interp(np.arange(int(len(speech) * rate / SAMPLE_RATE)) * SAMPLE_RATE / rate, np.arange(len(speech)), speech)
    speech = speech + np.random.default_rng(0).normal(0, 3e-4, len(speech))
    chunk = rate // 2  # stream_every=0.5 s

    def audio_payload(k: int) -> dict:
        k %= len(speech) // chunk
        return q.upload("audio.wav", _wav(speech[k * chunk : (k + 1) * chunk], rate), "audio/wav")

    # the inputs in media-time order, in tenths of a second: frame k at 0.2 k s, audio chunk k
    # (0.5 k .. 0.5 k + 0.5 s) once it has been recorded; at a tie the chunk goes first
    tenths = int(round(STREAM_S * 10))
    schedule = sorted(
        [(2 * k, 1, "frame", k) for k in range(tenths // 2 + 1)] + [(5 * (k + 1), 0, "audio", k) for k in range(tenths // 5)]
    )
    clock = MediaClock()
    app.clock_factory = lambda: clock
    events = {"frame": None, "audio": None}
    api = {"frame": "stream_frame", "audio": "stream_audio"}
    responses = {"frame": [], "audio": []}  # (media time of the input, its response)

    def session():
        live = [v for v in demo.state_holder[q.session_hash].state_data.values() if type(v).__name__ == "LiveSession"]
        return live[0] if live else None

    def caught_up(deadline_s: float = 60.0) -> None:
        """Waits until the session's worker has taken every input and run to the clock (the
        worker analyses input on its own thread; the responses do not wait for it)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            s = session()
            if s is not None and s.idle() and s.processed_to >= clock.now:
                return
            time.sleep(0.01)
        raise AssertionError(f"the session did not catch up with {clock.now} s of media")

    try:
        for at, _, kind, k in schedule:
            clock.now = at / 10
            data = [_frame_payload(frames[k % len(frames)]) if kind == "frame" else audio_payload(k), None]
            if events[kind] is None:
                events[kind] = q.join(api[kind], data)
            else:
                q.send(api[kind], events[kind], data)
            out = q.wait_outputs(events[kind], len(responses[kind]) + 1)
            responses[kind].append((clock.now, out[len(responses[kind])]))
            caught_up()
        # live windows are judged SETTLE_S after they end (the last chunk is in by then)
        clock.now = STREAM_S + SETTLE_S + 0.05
        caught_up()
    finally:
        for ev in events.values():
            if ev is not None:
                q.close(ev)
        app.clock_factory = None
    deadline = time.monotonic() + 30
    while q._listener.is_alive() and time.monotonic() < deadline:  # hang guard
        time.sleep(0.05)

    assert not q.errors(), q.errors()[:2]
    assert q.listen_error is None, q.listen_error
    cam, mic = events["frame"], events["audio"]
    sent_f, sent_a = sum(s[2] == "frame" for s in schedule), sum(s[2] == "audio" for s in schedule)
    # one response to every input (the event's final message on close repeats the last one)
    assert len(responses["frame"]) == sent_f == 26 and len(responses["audio"]) == sent_a == 10
    assert len(q.outputs(cam)) >= sent_f and len(q.outputs(mic)) >= sent_a
    # a frame's answer is the session's state alone; the views go out with the microphone's
    # chunks (and the page's 1 s tick), not five times a second
    assert all(len(o) == 1 for _, o in responses["frame"])
    answered = responses["audio"]
    outs = [o for _, o in answered]
    for out in outs:
        assert len(out) == 6  # state, score, label, health, transcript, latency (the timeline: the 1 s tick)
        # plain values: an update (gr.skip()) makes Gradio keep a new component in the session
        assert not any(isinstance(v, dict) and "__type__" in v for v in out), out
    healths = [_html(o[3]) for o in outs if _html(o[3])]
    assert healths and all("data-modality='vision'" in h and "data-modality='audio'" in h for h in healths)
    shown = sorted((at, _html(o[1])) for at, o in answered if "score" in _html(o[1]))
    assert shown, f"no window result displayed after {STREAM_S} s of streamed media"
    assert "window " in shown[0][1] and " s</span>" in shown[0][1]
    # a 3 s window cannot be shown before 3 s of input: on the session clock, no window came
    # out before 3 s of media were sent, and every window shown had ended by then
    assert shown[0][0] >= 3.0, f"a window shown after {shown[0][0]} s of media"
    assert all(3.0 <= _window_end(sc) <= at for at, sc in shown), shown
    print(f"\nsent {sent_f} frames, {sent_a} audio chunks; {len(shown)} responses showed a window")
    # badges of the windows shown: each sensor's real data reached the model in some window
    states = [
        {m: h.split(f"data-modality='{m}' data-state='")[1].split("'")[0] for m in ("vision", "audio", "text")}
        for h, sc in ((_html(o[3]), _html(o[1])) for o in outs)
        if h and "score" in sc
    ]
    assert states
    assert all(set(st.values()) <= {"OK", "DEGRADED", "DROPPED"} for st in states), states
    assert any(st["vision"] == "OK" for st in states), states
    assert any(st["audio"] != "DROPPED" for st in states), states
    # the server kept the session's windows in its gr.State: one per hop of media, on its clock
    live = [v for v in demo.state_holder[q.session_hash].state_data.values() if type(v).__name__ == "LiveSession"]
    assert len(live) == 1 and live[0].clock is clock
    assert [r["t_end"] for r in live[0].rows] == pytest.approx([3.0, 4.0, 5.0])
    assert all(r["t_end"] - r["t_start"] == pytest.approx(3.0) for r in live[0].rows)
    labels = [o[2] for o in outs if isinstance(o[2], dict) and o[2].get("confidences")]
    assert labels
    assert abs(sum(c["confidence"] for c in labels[-1]["confidences"]) - 1) < 1e-3


def test_one_window_endpoint_with_gradio_client(server, face_frame, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    from models.types import SENTIMENT_CLASSES

    client = Client(server[0], verbose=False)
    label, summary, table = client.predict("I love this, what a wonderful day", None, None, api_name="/analyse")
    conf = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(conf) == set(SENTIMENT_CLASSES)
    assert abs(sum(conf.values()) - 1) < 1e-3
    assert "modalities used: text" in summary
    assert [r[0] for r in table["data"]] == ["text", "audio", "vision"]

    img = tmp_path / "face.png"
    Image.fromarray(face_frame).save(img)
    label, summary, table = client.predict("", None, handle_file(str(img)), api_name="/analyse")
    assert abs(sum(c["confidence"] for c in label["confidences"]) - 1) < 1e-3
    assert "vision" in summary.split("modalities used:")[1]


def test_bad_files_get_clear_messages(server, tmp_path):
    """A 0-byte and a non-audio .wav in One window: a note on the page says what was wrong
    and the text is still analysed; a corrupt or empty recording in Replay: an error that
    says so, not a bare "Error"."""
    from gradio_client import Client, handle_file

    client = Client(server[0], verbose=False)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a wave file at all " * 100)
    for f, said in ((empty, "empty (0 bytes)"), (junk, "could not be read as audio")):
        label, summary, table = client.predict("what a lovely day", handle_file(str(f)), None, api_name="/analyse")
        assert said in summary and f.name in summary, summary
        assert "modalities used: text" in summary  # the rest is not lost
        assert abs(sum(c["confidence"] for c in label["confidences"]) - 1) < 1e-3
    pic = tmp_path / "face.png"
    pic.write_bytes(b"\x89PNG but not really")
    _, summary, _ = client.predict("fine", None, handle_file(str(pic)), api_name="/analyse")
    assert "could not be read as an image" in summary, summary

    from gradio_client.exceptions import AppError

    for name, data in (("empty.mp4", b""), ("corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(path)), "", False, api_name="/on_replay")
        msg = str(err.value)
        assert f"Cannot replay {name}" in msg and ("empty" in msg or "not a video or audio file" in msg), msg


def test_two_browsers_at_once_share_the_engine_and_stay_apart(app, server, http, config, frames, speech_clip):
    """Two browsers streaming at the same time through the one server: A sends camera and
    microphone, B only its microphone. Each gets its own session, on its own media clock,
    with one window per hop; A's camera reaches only A's windows; both sessions' windows
    went through the one engine (its fusion batcher ran them all) and the one shared
    recogniser. Inputs wait for their answers, so the counts hold on any machine."""
    from models.features.audio import SAMPLE_RATE

    rate = 48000
    speech = np.tile(np.concatenate([speech_clip, np.zeros(SAMPLE_RATE // 2, np.float32)]), 4)
    speech = np.interp(np.arange(int(len(speech) * rate / SAMPLE_RATE)) * SAMPLE_RATE / rate, np.arange(len(speech)), speech)
    chunk = rate // 2
    clocks = [MediaClock(), MediaClock()]
    made = iter(clocks)
    app.clock_factory = lambda: next(made)
    fused_before = sum(k * v for k, v in app.engine.stats()["engine-fusion"].items())
    asr_before = sum(app.recogniser_batches().values())
    browsers = [QueueSession(http, config), QueueSession(http, config)]

    def live(q):
        return app.session_for(q.session_hash)

    def drive(q, clock, camera: bool, events: dict, errors: list) -> None:
        try:
            tenths = int(round(STREAM_S * 10))
            schedule = sorted(
                ([(2 * k, 1, "frame", k) for k in range(tenths // 2 + 1)] if camera else [])
                + [(5 * (k + 1), 0, "audio", k) for k in range(tenths // 5)]
            )
            for at, _, kind, k in schedule:
                clock.now = at / 10
                if kind == "frame":
                    api, data = "stream_frame", [_frame_payload(frames[k % len(frames)]), None]
                else:
                    wav = _wav(speech[k * chunk : (k + 1) * chunk], rate)
                    api, data = "stream_audio", [q.upload("audio.wav", wav, "audio/wav"), None]
                n = len(q.outputs(events[kind])) if kind in events else 0
                if kind in events:
                    q.send(api, events[kind], data)
                else:
                    events[kind] = q.join(api, data)
                q.wait_outputs(events[kind], n + 1)
                _caught_up(live(q), clock)
            clock.now = STREAM_S + SETTLE_S + 0.05
            _caught_up(live(q), clock)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            for ev in events.values():
                q.close(ev)

    errors: list = []
    try:
        # A's first input makes A's session (the first clock); then both stream at once
        a, b = browsers
        a_first = a.join("stream_frame", [_frame_payload(frames[0]), None])
        a.wait_outputs(a_first, 1)  # (the event stays open: closing A's only event ends its message stream)
        threads = [
            threading.Thread(target=drive, args=(a, clocks[0], True, {"frame": a_first}, errors)),
            threading.Thread(target=drive, args=(b, clocks[1], False, {}, errors)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        app.clock_factory = None
    assert not errors, errors
    assert not any(q.errors() for q in browsers), [q.errors()[:1] for q in browsers]
    sa, sb = live(a), live(b)
    assert sa is not None and sb is not None and sa is not sb
    assert sa.clock is clocks[0] and sb.clock is clocks[1]
    for s in (sa, sb):
        assert [w.t_end for w in s.windows()] == pytest.approx([3.0, 4.0, 5.0])
    assert any(w.health["vision"].state.name == "OK" for w in sa.windows())
    assert all(w.health["vision"].state.name == "DROPPED" for w in sb.windows())
    fused = sum(k * v for k, v in app.engine.stats()["engine-fusion"].items()) - fused_before
    assert fused >= 6  # both sessions' windows through the one engine
    assert sum(app.recogniser_batches().values()) > asr_before  # and the shared recogniser


def _caught_up(s, clock, deadline_s: float = 60.0) -> None:
    """Waits until session ``s`` has taken every input and run to ``clock`` (a hang guard)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if s is not None and s.idle() and s.processed_to >= clock.now:
            return
        time.sleep(0.01)
    raise AssertionError(f"the session did not catch up with {clock.now} s of media")


@pytest.fixture(scope="module")
def demo_media(tmp_path_factory):
    """The demo clip's frames at 5 fps (RGB) and its audio (16 kHz), built from real data."""
    from streaming.democlip import build_clip
    from streaming.sources.files import read_media

    info = build_clip(tmp_path_factory.mktemp("demo") / "demo.mp4")
    frames, audio = read_media(info["path"], fps=5)
    return [f.image for f in frames], audio


def _dependency_of(config: dict, elem_id: str, trigger: str) -> dict:
    """The event ``trigger`` ("change", ...) of the component with ``elem_id``."""
    comp = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d for d in config["dependencies"] if [comp, trigger] in [list(t) for t in d["targets"]])


FAULT_ON, FAULT_OFF, FAULTED_S = 3.0, 8.0, 12.0  # media seconds: switched on, off, streamed in all


def test_faults_switched_on_the_page_show_in_the_windows_and_recover(app, server, http, config, demo_media):
    """A browser streams the demo clip's camera and microphone (a frame every 0.2 s of media,
    a 0.5 s chunk once recorded) and ticks vision:drop and audio:noise in the page's fault
    checkboxes at 3 s of media, unticks them at 8 s (the CheckboxGroup's change event, as
    the page sends it). On the session's media clock: the windows inside 3-8 s show the
    camera DROPPED "no data" and the microphone DEGRADED "noisy", those starting from 9 s
    have recovered, one window a second came out and none fused a DROPPED modality
    (``streaming.fault_matrix.check_cell``). The text is not judged: the recogniser decodes
    on its own thread at the machine's pace, not on the media clock."""
    from models.features.audio import SAMPLE_RATE
    from models.types import Modality
    from streaming.fault_matrix import Cell, check_cell
    from streaming.faults import FaultKind

    images, audio = demo_media
    rate = 48000
    speech = np.interp(np.arange(int(len(audio) * rate / SAMPLE_RATE)) * SAMPLE_RATE / rate, np.arange(len(audio)), audio)
    chunk = rate // 2
    dep = _dependency_of(config, "live-faults", "change")
    q = QueueSession(http, config)
    clock = MediaClock()
    app.clock_factory = lambda: clock
    events: dict[str, str] = {}
    api = {"frame": "stream_frame", "audio": "stream_audio"}

    def switch(names: list[str]) -> None:
        """The page's fault checkboxes changed: [names, snr slider, delay slider, state]."""
        body = q._body(dep, [names, 0, 1.0, None])
        r = http.post(f"{API}/queue/join", json=body)
        assert r.status_code == 200, r.text[:200]
        q.wait_outputs(r.json()["event_id"], 1)

    tenths = int(round(FAULTED_S * 10))
    schedule = sorted(
        [(2 * k, 1, "frame", k) for k in range(tenths // 2 + 1)] + [(5 * (k + 1), 0, "audio", k) for k in range(tenths // 5)]
    )
    try:
        for i, (at, _, kind, k) in enumerate(schedule):
            clock.now = at / 10
            if kind == "frame":
                data = [_frame_payload(images[k % len(images)]), None]
            else:
                data = [q.upload("audio.wav", _wav(speech[k * chunk : (k + 1) * chunk], rate), "audio/wav"), None]
            n = len(q.outputs(events[kind])) if kind in events else 0
            if kind in events:
                q.send(api[kind], events[kind], data)
            else:
                events[kind] = q.join(api[kind], data)
            q.wait_outputs(events[kind], n + 1)
            _caught_up(app.session_for(q.session_hash), clock)
            last_at_this_time = i + 1 == len(schedule) or schedule[i + 1][0] != at
            if last_at_this_time and clock.now in (FAULT_ON, FAULT_OFF):
                switch(["vision:drop", "audio:noise"] if clock.now == FAULT_ON else [])
        clock.now = FAULTED_S + SETTLE_S + 0.05  # the last window is judged SETTLE_S after it ends
        _caught_up(app.session_for(q.session_hash), clock)
    finally:
        for ev in events.values():
            q.close(ev)
        app.clock_factory = None

    assert not q.errors(), q.errors()[:2]
    s = app.session_for(q.session_hash)
    # the page's change event switched the session's faults on and off at those media times
    shown = {(f.modality.value, f.kind.value, f.start, f.end) for f in s.faults.timeline()}
    assert shown == {("vision", "drop", FAULT_ON, FAULT_OFF), ("audio", "noise", FAULT_ON, FAULT_OFF)}
    windows = s.windows()
    assert [w.t_end for w in windows] == pytest.approx(list(np.arange(3.0, FAULTED_S + 0.5, 1.0)))
    print(
        "\n"
        + ", ".join(
            f"{w.t_end:g} s: {w.health[Modality.VISION].reason or 'OK'} / {w.health[Modality.AUDIO].reason or 'OK'}"
            for w in windows
        )
    )
    cell = Cell(((Modality.VISION, FaultKind.DROP), (Modality.AUDIO, FaultKind.NOISE)), FAULT_ON, FAULT_OFF)
    failures = check_cell(windows, cell, s.cfg.window_s, s.cfg.hop_s, duration=FAULTED_S, recogniser=False)
    assert not failures, "\n".join(failures)
