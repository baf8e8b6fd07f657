"""Audio noise judgement on real speech: speech under the injected white noise (0 and 5 dB SNR)
is flagged noisy (DEGRADED), clean real speech (co-recorded clips, RAVDESS and EmoDB test
clips, quiet speech, speech with pauses) is not, and silence stays silence. Clips are read
from ../shared/data at test time."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.paths import data_root
from models.types import Modality
from streaming.checks import AudioChecker, audio_window_issue, estimate_snr_db
from streaming.faults import FaultInjector, parse_spec
from streaming.health import HealthConfig, HealthMonitor
from streaming.types import AudioChunk, Health

RATE = 16_000
WINDOW = 3 * RATE
CHUNK = RATE // 10  # the file and microphone sources' 0.1 s chunks
REAL = (
    "ravdess_01-01-07-02-02-01-01.mp4",
    "meld_train_dia0_utt0.mp4",
    "cremad_1001_DFA_SAD_XX.flv",
    "cremad_1001_DFA_ANG_XX.flv",
)
NOISY = re.compile(r"^noisy \(about -?\d+ dB SNR\)$")


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    """Real speech, float32 16 kHz mono: four co-recorded clips (CREMA-D's sad one has the
    most room rumble of the eight) and RAVDESS / EmoDB test-split clips."""
    import soundfile as sf

    from models.training.data import load_speech
    from streaming.sources import read_media

    root = data_root()
    if not (root / "real").is_dir():
        pytest.skip(f"no real clips under {root}")
    out = {name: read_media(root / "real" / name)[1] for name in REAL}
    test = load_speech()
    test = test[test.split == "test"]
    for corpus in ("ravdess", "emodb"):
        rows = test[test.corpus == corpus]
        for r in rows.iloc[:: max(1, len(rows) // 3)].head(3).itertuples():
            a, sr = sf.read(r.path, dtype="float32")
            assert sr == RATE
            out[f"{corpus}:{r.path.rsplit('/', 1)[-1]}"] = a
    return out


def windows(x: np.ndarray, start: int = 0) -> list[np.ndarray]:
    """3 s windows at 1 s hops from sample ``start`` (the whole rest when shorter)."""
    if len(x) - start <= WINDOW:
        return [x[start:]]
    return [x[s : s + WINDOW] for s in range(start, len(x) - WINDOW + 1, RATE)]


def check(x: np.ndarray, cfg: HealthConfig | None = None):
    return audio_window_issue(x.astype(np.float32), np.ones(len(x), bool), cfg or HealthConfig())


def noisy_copy(a: np.ndarray, snr: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """The clip three times over, 0.1 s chunks through the fault injector with white noise at
    ``snr`` dB from the second copy on (the injector has tracked the speech level by then, as
    in a live stream); returns the samples and where the fault starts."""
    x = np.concatenate([a] * 3)
    start = len(a)
    inj = FaultInjector(parse_spec(f"audio:noise:snr={snr:g}@{start / RATE:.4f}-"), seed=seed)
    out = [c.samples for i in range(0, len(x), CHUNK) for c in inj.audio(AudioChunk(i / RATE, x[i : i + CHUNK], RATE))]
    y = np.concatenate(out)
    assert len(y) == len(x)
    first = -(-start // CHUNK) * CHUNK  # the first chunk that is wholly noisy
    return y, first


def test_clean_real_speech_is_not_noisy(clips):
    cfg = HealthConfig()
    for name, a in clips.items():
        for w in windows(a):
            snr = estimate_snr_db(w)
            ck = check(w, cfg)
            assert ck.usable and ck.issue == "", (name, snr, ck)
            assert snr >= cfg.min_snr_db + 5, (name, snr)  # with a margin
            # a soft speaker at a low microphone gain: the estimate does not depend on level
            quiet = w * 0.01
            assert abs(estimate_snr_db(quiet) - snr) < 0.5 or snr >= 119, name
            assert not check(quiet, cfg).issue.startswith("noisy"), name


@pytest.mark.parametrize("snr", [0, 5])
def test_injected_white_noise_is_noisy(clips, snr):
    cfg = HealthConfig()
    for k, (name, a) in enumerate(clips.items()):
        y, start = noisy_copy(a, snr, seed=k)
        for w in windows(y, start):
            est = estimate_snr_db(w)
            ck = check(w, cfg)
            assert ck.usable and NOISY.match(ck.issue), (name, est, ck)
            assert est <= snr + 2.5, (name, est)  # about the injected SNR, not peaks over floor


def test_noisy_audio_window_is_degraded_by_the_monitor(clips):
    """Chunk checks and the whole-window check as the pipeline combines them: the audio of a
    window inside a 0 dB noise fault is DEGRADED "noisy (about N dB SNR)"; clean audio is OK."""
    cfg = HealthConfig()
    a = clips["ravdess_01-01-07-02-02-01-01.mp4"]
    y, start = noisy_copy(a, 0)
    for x, expect in ((np.concatenate([a] * 3), Health.OK), (y, Health.DEGRADED)):
        mon, chk = HealthMonitor(cfg), AudioChecker(cfg)
        for i in range(0, len(x) - CHUNK + 1, CHUNK):
            t = i / RATE
            mon.observe(Modality.AUDIO, t, CHUNK / RATE, chk.chunk(x[i : i + CHUNK], RATE), t + 0.1)
        t0 = start / RATE
        s = mon.judge(Modality.AUDIO, t0, t0 + 3, t0 + 3.05, check(x[start : start + WINDOW], cfg))
        assert s.state == expect, s
        if expect == Health.DEGRADED:
            assert NOISY.match(s.reason), s


def test_pauses_quiet_speech_and_silence(clips):
    cfg = HealthConfig()
    rng = np.random.default_rng(0)
    a = clips["ravdess_01-01-07-02-02-01-01.mp4"]
    speech = a[int(0.8 * RATE) : int(2.3 * RATE)]  # 1.5 s of the sentence
    floor = rng.normal(0, 10 ** (-75 / 20), RATE).astype(np.float32)  # a microphone's floor
    # natural pauses: speech, a 1 s pause, speech again; a long lead-in before a few words
    assert check(np.concatenate([speech[:RATE], floor, speech[RATE // 2 :]]), cfg).issue == ""
    assert check(np.concatenate([floor, floor, speech[:RATE]]), cfg).issue == ""
    # a soft-spoken clip at -60 dBFS is read, not called noisy or silent
    quiet = a[:WINDOW] * (10 ** (-60 / 20) / np.sqrt(np.mean(a[:WINDOW] ** 2)))
    assert check(quiet, cfg).issue == ""
    # silence stays silence: digital zeros, a -75 dBFS floor, a -60 dBFS hiss with no speech
    assert check(np.zeros(WINDOW, np.float32), cfg).issue == "silence"
    assert check(rng.normal(0, 10 ** (-75 / 20), WINDOW), cfg).issue == "silence"
    assert check(rng.normal(0, 10 ** (-60 / 20), WINDOW), cfg).issue == "silence"
    # a loud hiss with no speech in it is noise, not silence
    assert NOISY.match(check(rng.normal(0, 0.05, WINDOW), cfg).issue)


def test_estimate_edges():
    assert estimate_snr_db(np.zeros(WINDOW, np.float32)) == 0.0
    assert estimate_snr_db(np.zeros(1000, np.float32)) == float("inf")  # too short to judge
    t = np.arange(WINDOW) / RATE
    tone = (0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    assert estimate_snr_db(tone) > 60  # gated tone over digital silence
    assert -30.0 <= estimate_snr_db(np.random.default_rng(1).normal(0, 0.1, WINDOW)) < 0
