"""Fault spec parsing, fault injectors, quality checks, windowing: the parts of the stream
that need no model."""

import math

import numpy as np
import pytest

from models.types import Modality
from streaming.checks import (
    AudioChecker,
    VisionChecker,
    audio_window_issue,
    centre_gray,
    estimate_snr_db,
    noise_sigma,
    small_gray,
)
from streaming.faults import Fault, FaultInjector, FaultKind, parse_spec
from streaming.health import HealthConfig, HealthMonitor
from streaming.plot import timeline_figure
from streaming.types import AudioChunk, Health, VideoFrame
from streaming.windowing import AudioTrack, Windower


# ---------------------------------------------------------------- fault specs
def test_parse_spec_issue_example():
    f = parse_spec("vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9")
    assert [(x.modality, x.kind, x.start, x.end) for x in f] == [
        (Modality.VISION, FaultKind.DROP, 2.0, 5.0),
        (Modality.AUDIO, FaultKind.NOISE, 4.0, 8.0),
        (Modality.TEXT, FaultKind.OUTAGE, 6.0, 9.0),
    ]
    assert f[1].param("snr") == 0.0
    assert f[0].active(2.0) and f[0].active(4.99) and not f[0].active(5.0)


def test_parse_spec_open_ends_and_params():
    f = parse_spec(" audio:delay:delay=0.5:jitter=0.1@3- , vision:freeze ")
    assert f[0].end == math.inf and f[0].param("delay") == 0.5 and f[0].param("jitter") == 0.1
    assert f[1].start == 0.0 and f[1].end == math.inf
    assert parse_spec("") == []
    assert str(parse_spec("vision:noise:snr=3@1-2")[0]) == "vision:noise:snr=3@1-2"


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("camera:drop@1-2", "modality"),
        ("vision:explode@1-2", "kind"),
        ("text:drop@1-2", "text takes faults outage"),
        ("audio:noise:loud=3@1-2", "no parameter"),
        ("audio:noise:snr=x@1-2", "name=number"),
        ("vision:drop@5-2", "end > start"),
        ("vision", "expected"),
    ],
)
def test_parse_spec_errors(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_spec(spec)


# ---------------------------------------------------------------- injectors
def frame(t, v=100):
    img = np.full((64, 64, 3), v, np.uint8)
    img[20:40, 20:40] = 200
    return VideoFrame(t, img)


def chunk(t, n=1600, amp=0.1, seed=0):
    return AudioChunk(t, (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32), 16000)


def test_drop_freeze_blackout():
    inj = FaultInjector(parse_spec("vision:drop@1-2,vision:freeze@2-3,vision:blackout@3-4,audio:blackout@0-1"))
    assert len(inj.video(frame(0.5, 10))) == 1
    assert inj.video(frame(1.5)) == []  # dropped
    out = inj.video(frame(2.5, 77))[0]  # frozen: the last good frame's pixels, new time
    assert out.t == 2.5 and out.image[0, 0, 0] == 10
    assert not inj.video(frame(3.5)).pop().image.any()  # black
    assert not inj.audio(chunk(0.5)).pop().samples.any()  # zeroed
    assert inj.video(frame(4.5, 55))[0].image[0, 0, 0] == 55  # recovered


def test_noise_snr_is_what_was_asked():
    inj = FaultInjector(parse_spec("audio:noise:snr=0@1-"), seed=1)
    clean = chunk(0.0, 16000, amp=0.1)
    inj.audio(clean)  # sets the speech level
    x = chunk(1.0, 16000, amp=0.1, seed=3)
    y = inj.audio(x)[0].samples
    snr = 10 * np.log10(np.mean(x.samples**2) / np.mean((y - x.samples) ** 2))
    assert abs(snr) < 1.5


def test_delay_holds_items_in_order():
    inj = FaultInjector(parse_spec("audio:delay:delay=1@0-"))
    assert inj.audio(chunk(0.0)) == []
    assert inj.audio(chunk(0.5)) == []
    out = inj.audio(chunk(1.1))
    assert [c.t for c in out] == [0.0]
    assert [c.t for c in inj.release(Modality.AUDIO, 5.0)] == [0.5, 1.1]


def test_live_toggle():
    inj = FaultInjector()
    inj.set_live("vision", "drop", True)
    assert inj.video(frame(0.0)) == []
    inj.set_live("vision", "drop", False)
    assert len(inj.video(frame(0.1))) == 1
    inj.set_live("text", "outage", True)
    assert inj.text_outage(123.0)
    with pytest.raises(ValueError):
        inj.set_live("text", "noise", True)
    with pytest.raises(ValueError):
        Fault(Modality.AUDIO, FaultKind.OUTAGE)


def test_live_toggles_are_logged_for_the_timeline(make_window):
    inj = FaultInjector(faults=parse_spec("audio:drop@1-2"))
    inj.set_live("vision", "freeze", True, t=4.0)
    inj.set_live("vision", "freeze", True, t=6.0)  # still on: keeps its start
    inj.set_live("audio", "noise", True, t=5.0, snr=3.0)
    inj.set_live("vision", "freeze", False, t=9.0)
    spans = {(f.modality.value, f.kind.value): (f.start, f.end) for f in inj.timeline()}
    assert spans == {("audio", "drop"): (1.0, 2.0), ("vision", "freeze"): (4.0, 9.0), ("audio", "noise"): (5.0, math.inf)}
    rows = [make_window(t) for t in range(3, 12)]
    fig = timeline_figure(rows, inj.timeline(), horizon=5)
    shaded = [p for p in fig.axes[0].patches if p.get_alpha() == 0.15]
    assert len(shaded) == 2  # the audio drop at 1-2 s lies before the 5 s shown


# ---------------------------------------------------------------- quality checks
def textured(seed=0, size=256):
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (size // 16, size // 16)).astype(np.float32)
    import cv2

    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, 2)


def test_vision_checks():
    c = VisionChecker(HealthConfig())
    img = textured()
    assert c.image(0.0, small_gray(img), centre_gray(img)).issue == ""
    black = np.zeros_like(img)
    assert c.image(0.2, small_gray(black)).issue == "black frames"
    white = np.full_like(img, 250)
    assert c.image(0.4, small_gray(white)).issue == "over-exposed frames"
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    ck = c.image(0.6, small_gray(noisy), centre_gray(noisy))
    assert ck.usable and ck.issue == "noisy frames"
    # the same frame again and again: frozen after frozen_s
    f = VisionChecker(HealthConfig(frozen_s=0.8))
    verdicts = [f.image(t, small_gray(img), centre_gray(img)) for t in np.arange(0, 2, 0.2)]
    assert verdicts[0].issue == "" and verdicts[-1].issue == "frozen frames" and not verdicts[-1].usable
    assert noise_sigma(centre_gray(img)) < 2.0


def test_face_checks():
    c = VisionChecker(HealthConfig())
    g = small_gray(textured())
    assert c.face(g, 0, False, None, 256).issue == "no face"
    assert c.face(g, 2, True, (10, 10, 100, 100), 256).issue == "several faces"
    flat = np.full_like(g, 120)
    assert c.face(flat, 1, True, (10, 10, 100, 100), 160).issue == "blurred face"
    assert c.face(g, 1, True, (10, 10, 100, 100), 256).issue == ""


def test_audio_checks():
    c = AudioChecker(HealthConfig())
    x = chunk(0.0).samples
    assert c.chunk(x, 16000).issue == ""
    assert c.chunk(x, 16000).issue == "repeating samples"
    assert c.chunk(np.zeros(1600, np.float32), 16000).issue == "zeroed samples"
    bad = x.copy()
    bad[3] = np.nan
    assert c.chunk(bad, 16000).issue == "NaN or inf samples"
    assert c.chunk(x[:800], 48000).issue == "wrong sample rate 48000 Hz"
    assert "dtype" in c.chunk((x * 1000).astype(np.int16), 16000).issue
    assert "malformed" in c.chunk(np.zeros((10, 2), np.float32), 16000).issue
    loud = np.clip(chunk(0, amp=3.0, seed=5).samples, -1, 1)
    ck = c.chunk(loud, 16000)
    assert ck.usable and ck.issue == "clipping"


def test_audio_window_issue_silence_and_noise():
    cfg = HealthConfig()
    t = np.arange(48000) / 16000
    speechlike = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    ok = np.ones(48000, bool)
    assert audio_window_issue(speechlike, ok, cfg).issue == ""
    assert estimate_snr_db(speechlike) > 30
    assert audio_window_issue(np.full(48000, 1e-4, np.float32), ok, cfg).issue == "silence"
    noisy = speechlike + np.random.default_rng(0).normal(0, 0.14, 48000).astype(np.float32)
    ck = audio_window_issue(noisy, ok, cfg)
    assert ck.usable and ck.issue.startswith("noisy")


def test_monitor_rules():
    cfg = HealthConfig()
    h = HealthMonitor(cfg, expected_fps=5)
    from streaming.checks import Check

    for t in np.arange(0, 3, 0.2):  # all good
        h.observe(Modality.VISION, t, 0.2, Check(True), t)
    assert h.judge(Modality.VISION, 0, 3, 3.0).state == Health.OK
    for t in np.arange(3, 6, 0.2):  # all black
        h.observe(Modality.VISION, t, 0.2, Check(False, "black frames"), t)
    s = h.judge(Modality.VISION, 3, 6, 6.0)
    assert (s.state, s.reason) == (Health.DROPPED, "black frames")
    for t in np.arange(6, 9, 0.2):  # one in three blurred
        h.observe(Modality.VISION, t, 0.2, Check(True, "blurred face" if round(t * 5) % 3 == 0 else ""), t)
    s = h.judge(Modality.VISION, 6, 9, 9.0)
    assert (s.state, s.reason) == (Health.DEGRADED, "blurred face")
    s = h.judge(Modality.VISION, 9, 12, 12.0)  # nothing for 3 s
    assert s.state == Health.DROPPED and s.reason.startswith("no data for")
    h.source_error(Modality.AUDIO, "no microphone: no input device")
    assert h.judge(Modality.AUDIO, 9, 12, 12.0).reason == "no microphone: no input device"


def test_no_data_means_the_windows_data_is_missing_not_a_quiet_transport():
    """The microphone's chunks up to the window's end are in, then nothing for 1.4 s (its
    next chunks held up in the transport, a busy server judging late): not "no data". A
    microphone whose data stops 2 s before the window's end is."""
    from streaming.checks import Check

    h = HealthMonitor(HealthConfig(), expected_fps=5)
    for k in range(12):  # 0.5 s chunks, 0-6 s, each arriving as its samples are over
        h.observe(Modality.AUDIO, 0.5 * k, 0.5, Check(True), 0.5 * k + 0.5)
    s = h.judge(Modality.AUDIO, 3.0, 6.0, 7.4)
    assert s.state == Health.OK, s
    s = h.judge(Modality.AUDIO, 5.0, 8.0, 8.4)  # the data ends at 6 s, nothing since 6 s
    assert (s.state, s.reason) == (Health.DROPPED, "no data for 2.0 s")


# ---------------------------------------------------------------- windowing
def test_audio_track_places_samples_on_the_clock():
    tr = AudioTrack(keep_s=5.0)
    tr.write(1.0, np.ones(16000, np.float32))
    tr.write(2.5, np.full(8000, 2.0, np.float32))  # a 0.5 s gap before it
    x, ok = tr.read(0.5, 3.5)
    assert len(x) == 48000
    assert not ok[:8000].any() and ok[8000:24000].all()  # before 1.0: nothing
    assert not ok[24000:32000].any()  # the gap 2.0-2.5
    assert ok[32000:40000].all() and (x[32000:40000] == 2.0).all()
    fv = AudioTrack.frame_valid(ok)
    assert len(fv) == 150 and fv[25:75].all() and not fv[:25].any() and not fv[75:100].any() and fv[100:125].all()
    tr.write(10.0, np.ones(1600, np.float32))  # old audio falls out of the 5 s memory
    assert not tr.read(1.0, 2.0)[1].any()


def test_windower_hops():
    w = Windower(3.0, 1.0)
    assert w.due(0.0) == []
    assert w.due(2.99) == []
    assert w.due(3.0) == [(0.0, 3.0)]
    assert w.due(5.5) == [(1.0, 4.0), (2.0, 5.0)]
    with pytest.raises(ValueError):
        Windower(1.0, 2.0)
