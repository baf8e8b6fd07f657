"""Sources: browser payload conversion, local devices absent, file replay of a clip built here."""

import itertools
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from models.features.audio import to_mono_16k
from streaming.sources import (
    BrowserInput,
    FileReplay,
    LocalCamera,
    LocalMicrophone,
    SourceError,
    _decode_soundfile,
    media_duration,
    probe_local_devices,
    read_media,
    write_media,
)
from streaming.types import AudioChunk, VideoFrame

CLIP_S, FPS = 4.0, 15


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- BrowserInput


def test_browser_audio_48k_stereo_int16_becomes_16k_mono_with_continuous_clock():
    src = BrowserInput()
    src.start(t0=2.0)
    mono = (_tone(1.5, 48000) * 32767).astype(np.int16)
    stereo = np.stack([mono, mono], axis=1)  # [n, 2]
    chunks = [src.audio((48000, stereo[i : i + 24000])) for i in range(0, len(stereo), 24000)]
    assert [c.t for c in chunks] == pytest.approx([2.0, 2.5, 3.0])
    for c in chunks:
        assert isinstance(c, AudioChunk) and c.rate == 16000
        assert c.samples.dtype == np.float32 and c.samples.ndim == 1 and len(c.samples) == 8000
    whole = np.concatenate([c.samples for c in chunks])
    assert np.abs(whole[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)
    assert chunks[-1].end == pytest.approx(3.5)
    # an explicit t re-anchors; the next chunk without t follows it
    c = src.audio((16000, np.zeros(1600, np.int16)), t=10.0)
    assert c.t == 10.0 and src.audio((16000, np.zeros(800, np.float32))).t == pytest.approx(10.1)
    src.start()  # reset: next chunk at 0
    assert src.audio((8000, np.zeros(800, np.int16))).t == 0.0
    # chunks whose length does not divide by 3: the clock follows input samples, no drift
    src.start()
    ts = [src.audio((48000, np.zeros(1000, np.int16))).t for _ in range(480)]
    assert ts[-1] == pytest.approx(479 * 1000 / 48000, abs=1e-9)


def test_browser_frames_rgba_and_gray_become_rgb():
    src = BrowserInput()
    rgba = np.zeros((120, 160, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    f = src.video(rgba, 1.25)
    assert isinstance(f, VideoFrame) and f.t == 1.25
    assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 and (f.image[..., 0] == 200).all()
    gray = np.full((64, 48), 77, np.uint8)
    for g in (gray, gray[..., None]):
        img = src.video(g, 0.0).image
        assert img.shape == (64, 48, 3) and (img == 77).all()


@pytest.mark.parametrize(
    "chunk, match",
    [
        ((16000, np.full(1600, np.nan, np.float32)), "NaN"),
        ((16000, np.zeros(1600, np.complex64)), "dtype"),
        ((16000, np.zeros(0, np.int16)), "empty"),
        ((16000, np.zeros((10, 10, 2), np.int16)), "shape"),
        ((1000, np.zeros(1600, np.int16)), "rate"),
        ((48000, np.zeros(48000 * 20, np.int16)), "longer"),
        ((48000.0, np.zeros(480, np.int16)), "integer"),
        ((16000, [0, 1, 2]), "numpy"),
        ("not audio", "tuple"),
    ],
)
def test_browser_audio_rejects_bad_input(chunk, match):
    with pytest.raises(ValueError, match=match):
        BrowserInput().audio(chunk)


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((10_000, 20, 3), np.uint8), "too narrow"),  # scaled to fit 4096, 8 pixels wide
        (np.zeros((100, 100, 3), np.float32), "uint8"),
        (np.zeros((100, 100, 2), np.uint8), "shape"),
        (np.zeros((8, 8, 3), np.uint8), "under 16 pixels"),
        ("frame.png", "numpy"),
    ],
)
def test_browser_video_rejects_bad_input(frame, match):
    with pytest.raises(ValueError, match=match):
        BrowserInput().video(frame, 0.0)
    with pytest.raises(ValueError, match="timestamp"):
        BrowserInput().video(np.zeros((32, 32, 3), np.uint8), float("nan"))


# ---------------------------------------------------------------- local devices (none here)


def test_local_microphone_without_device_reports_clear_error():
    errors, items = [], []
    mic = LocalMicrophone(sink=items.append, on_error=errors.append)
    assert mic.start() is mic  # no exception
    assert not mic.running and items == []
    assert mic.error and ("PortAudio" in mic.error or "no input device" in mic.error)
    assert errors == [mic.error]
    mic.stop()
    with LocalMicrophone(device="no such microphone") as m2:
        assert m2.error and m2.error.startswith("no ")


def test_local_camera_without_device_reports_clear_error():
    errors = []
    cam = LocalCamera(index=7, fps=15, sink=lambda item: None, on_error=errors.append)
    cam.start()
    assert cam.error and "no camera" in cam.error and errors == [cam.error]
    assert not cam.running
    cam.stop()


def test_probe_local_devices_gives_reasons():
    found = probe_local_devices(camera_index=7)
    assert set(found) == {"vision", "audio"}
    assert found["vision"] and "camera" in found["vision"]
    assert found["audio"] and ("PortAudio" in found["audio"] or "input device" in found["audio"])


# ---------------------------------------------------------------- file replay of a clip made here


def _speech_or_tone(tmp_path) -> np.ndarray:
    """4 s of audio: espeak-ng speech when installed (padded with a quiet tone), else a 440 Hz tone."""
    n = int(CLIP_S * 16000)
    audio = 0.05 * _tone(CLIP_S, 16000)
    if shutil.which("espeak-ng"):
        wav = tmp_path / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "I really enjoyed this film, it was wonderful"], check=True)
        import soundfile as sf

        speech, rate = sf.read(str(wav), dtype="float32")
        speech = to_mono_16k(speech, rate)[:n]
        audio[: len(speech)] += 0.8 * speech
    else:
        audio += 0.4 * _tone(CLIP_S, 16000)
    return np.clip(audio, -1, 1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, fer_test):
    """A 4 s mp4: a real FER-2013 face moving and brightening at 15 fps, with 16 kHz audio."""
    import cv2

    from models.features.vision import fer_image_to_frame

    tmp = tmp_path_factory.mktemp("clip")
    base = fer_image_to_frame(fer_test.images[0])  # RGB, 288x288
    frames = []
    for i in range(int(CLIP_S * FPS)):
        shift = np.float32([[1, 0, 6 * np.sin(i / 5)], [0, 1, 3 * np.cos(i / 7)]])
        f = cv2.warpAffine(base, shift, base.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
        frames.append(np.clip(f.astype(np.int16) + int(20 * np.sin(i / 9)), 0, 255).astype(np.uint8))
    audio = _speech_or_tone(tmp)
    path = write_media(tmp / "clip.mp4", frames, FPS, audio)
    return path, frames, audio


def test_written_clip_is_h264_that_browsers_play(clip):
    import shutil
    import subprocess

    if shutil.which("ffprobe") is None:
        pytest.skip("no ffprobe (ffmpeg is in packages.txt)")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,pix_fmt", "-of", "csv=p=0", str(clip[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(out.split()) == ["aac", "h264,yuv420p"]


def test_replay_as_fast_as_possible_emits_frames_and_audio_in_order(clip):
    path, frames, audio = clip
    items = list(FileReplay(path, realtime=False).items())
    ts = [it.t for it in items]
    assert ts == sorted(ts) and ts[0] == 0.0
    vids = [it for it in items if isinstance(it, VideoFrame)]
    auds = [it for it in items if isinstance(it, AudioChunk)]
    assert 58 <= len(vids) <= 62
    assert vids[1].t == pytest.approx(1 / FPS)
    assert vids[0].image.shape == frames[0].shape and vids[0].image.dtype == np.uint8
    assert np.abs(vids[0].image.astype(int) - frames[0]).mean() < 8  # same picture, RGB order kept
    assert all(a.rate == 16000 and a.samples.dtype == np.float32 for a in auds)
    assert all(len(a.samples) == 1600 for a in auds[:-1])
    n = sum(len(a.samples) for a in auds)
    assert abs(n / 16000 - CLIP_S) <= 0.2
    assert media_duration(path) == pytest.approx(CLIP_S, abs=0.2)
    # the decoded audio is the audio written (AAC is lossy, but the energy is kept)
    back = np.concatenate([a.samples for a in auds])
    m = min(len(back), len(audio))
    assert np.sqrt(np.mean(back[:m] ** 2)) == pytest.approx(np.sqrt(np.mean(audio[:m] ** 2)), rel=0.2)


def test_replay_options_fps_t0_video_only_and_loop(clip):
    path, _, _ = clip
    sub = [it for it in FileReplay(path, realtime=False, fps=5, audio=False, t0=100.0).items()]
    assert all(isinstance(it, VideoFrame) for it in sub)
    assert 19 <= len(sub) <= 21 and sub[0].t == 100.0
    assert np.diff([it.t for it in sub]).mean() == pytest.approx(0.2, abs=0.02)
    frames, audio = read_media(path, fps=5)
    assert len(frames) == len(sub) and audio is not None and abs(len(audio) / 16000 - CLIP_S) <= 0.2
    # loop: the second pass continues the clock
    looped = FileReplay(path, realtime=False, video=False, loop=True)
    it = looped.items()
    ts = [next(it).t for _ in range(60)]
    looped.stop()
    assert ts == sorted(ts) and ts[-1] > CLIP_S


class FakeTime:
    """A clock that only ``wait`` moves: each wait is recorded and taken at once, never slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False  # go on


def test_replay_realtime_at_speed_4_in_a_thread(clip):
    """Realtime pacing on a fake clock: every item comes out when its own time, 4x faster,
    has passed on the clock, and the waits add up to the clip's length / 4."""
    path, _, _ = clip
    fake = FakeTime()
    got = []  # (clock time when emitted, item); the sink runs on the replay's thread
    replay = FileReplay(
        path, sink=lambda item: got.append((fake.now, item)), realtime=True, speed=4.0, clock=fake, wait=fake.wait
    )
    replay.start()
    assert replay.join(timeout=60)  # a hang guard: on the fake clock nothing is slept
    assert replay.done and replay.error is None
    items = [item for _, item in got]
    assert 58 <= sum(isinstance(i, VideoFrame) for i in items) <= 62
    assert [i.t for i in items] == sorted(i.t for i in items)
    assert [now for now, _ in got] == pytest.approx([i.t / 4.0 for i in items], abs=1e-9)
    assert fake.waits and all(w > 0 for w in fake.waits)
    assert sum(fake.waits) == pytest.approx(items[-1].t / 4.0, abs=1e-9)
    assert items[-1].t == pytest.approx(CLIP_S, abs=0.2)
    # a consumer slower than the clip: nothing is waited for, no item is left out
    behind, n = FakeTime(), 0
    for _ in FileReplay(path, realtime=True, speed=4.0, video=False, clock=behind, wait=behind.wait).items():
        n += 1
        behind.now += 1.0  # each item takes a second of the clock to consume
    assert behind.waits == [] and n == sum(isinstance(i, AudioChunk) for i in items)
    # wait() answering True ends the replay: only the items due at once come out
    first = list(FileReplay(path, realtime=True, clock=FakeTime(), wait=lambda seconds: True).items())
    assert first and all(i.t == 0.0 for i in first)


def test_stop_ends_a_realtime_replay_on_the_real_clock(clip):
    """Default pacing (the wall clock): after the items at t = 0 the next one is due in about
    70 000 s at this speed; stop() ends that wait. Timeouts here only guard against a hang."""
    path, _, _ = clip
    got = []
    replay = FileReplay(path, sink=got.append, realtime=True, speed=1e-6).start()
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:  # hang guard
        time.sleep(0.01)
    assert got and replay.running
    replay.stop()
    assert replay.join(timeout=60) and replay.done and not replay.running and replay.error is None
    assert all(i.t == 0.0 for i in got)


def test_audio_file_replay_and_soundfile_fallback(tmp_path):
    tone = 0.3 * _tone(1.0, 16000)
    wav = write_media(tmp_path / "tone.wav", [], FPS, tone)
    items = list(FileReplay(wav, realtime=False).items())
    assert all(isinstance(i, AudioChunk) for i in items) and len(items) == 10
    assert [i.t for i in items] == pytest.approx(np.arange(10) / 10)
    direct = _decode_soundfile(wav)
    assert len(direct) == 16000 and np.abs(direct - tone).max() < 1e-3


def test_missing_or_unreadable_file_raises_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        FileReplay(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(SourceError, match="bad.mp4"):
        FileReplay(bad)
    with pytest.raises(SourceError):
        read_media(tmp_path / "nope.wav")


def _stepping_clock(step: float):
    """A clock that advances ``step`` seconds each time it is read (thread-safe)."""
    ticks, lock = itertools.count(), threading.Lock()

    def clock() -> float:
        with lock:
            return next(ticks) * step

    return clock


def _camera_run(path, fps: float, clock) -> tuple[LocalCamera, list, list]:
    got, errors = [], []
    cam = LocalCamera(index=str(path), fps=fps, sink=got.append, on_error=errors.append, stall_s=0.3, clock=clock)
    with cam:
        assert cam.error is None
        deadline = time.monotonic() + 60
        while cam.error is None and time.monotonic() < deadline:  # hang guard
            time.sleep(0.02)
    return cam, got, errors


def test_camera_thread_reports_a_stream_that_stops(clip):
    """A stream OpenCV can open (here the clip, as an IP camera URL would be) that ends:
    frames come out as RGB, then .error says it stopped, without an exception. The clock
    advances one frame period per read, so every frame of the clip comes out, however fast
    it decodes, and the stall is timed on that clock too."""
    path, frames, _ = clip
    n = len(read_media(path)[0])  # what OpenCV decodes of the clip
    cam, got, errors = _camera_run(path, FPS, _stepping_clock(1 / FPS))
    assert cam.error and "stopped delivering" in cam.error and errors == [cam.error]
    assert not cam.running
    assert len(got) == n and all(isinstance(f, VideoFrame) for f in got)
    assert got[0].image.shape == frames[0].shape and np.abs(got[0].image.astype(int) - frames[0]).mean() < 8
    assert np.diff([f.t for f in got]) == pytest.approx(np.full(n - 1, 1 / FPS))


def test_camera_keeps_at_most_fps_frames_a_second_of_its_clock(clip):
    """A camera delivering twice as fast as ``fps`` asks: every other frame is kept."""
    path, _, _ = clip
    n = len(read_media(path)[0])
    cam, got, _ = _camera_run(path, FPS / 2, _stepping_clock(1 / FPS))
    assert cam.error and "stopped delivering" in cam.error
    assert len(got) == (n + 1) // 2
    assert np.diff([f.t for f in got]) == pytest.approx(np.full(len(got) - 1, 2 / FPS))
