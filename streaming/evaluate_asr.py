"""What do the recogniser's cheaper decodes cost in words? Word error rate of the streaming
recogniser under each of its configurations:

- ``full``: Whisper's 30 s encoder, LocalAgreement-2 and the length trims alone (what
  faster-whisper's ``transcribe`` over the buffer gives);
- ``fit``: the encoder sized to the speech (``streaming.whisper_batch``, ``context="fit"``);
- ``pauses``: ``fit`` with the pause rules (``streaming.asr``: words before a pause of the
  speaker committed at once, the buffer cut inside the pause, no decode of silence);
- ``stable``: ``pauses`` with the stable rule (a word the decode ends at least 1 s before
  the buffer's end is committed by that decode, without waiting for the next one to agree),
  the app's setting;
- ``*-busy``: a step every 1.5 s instead of 1 s, as each of six sessions sharing one
  recogniser on 2 cores gets (``app.http_load``); ``stable0.7`` and ``stable1.5`` try the
  stable rule at 0.7 s and 1.5 s.

    python -m streaming.evaluate_asr [--out docs/asr-context] [--configs full,fit,pauses,stable]

Each recording is streamed as live audio is (0.5 s chunks, a decode every 1 s or 1.5 s, then
``flush``) through ``streaming.asr.StreamingASR``; the committed words are scored against
the official transcript (lower case, punctuation dropped, word edit distance / reference
words). Also reported per configuration: decode milliseconds (p50, p95, one thread; a step
that decodes nothing counts as a skipped step, not a decode), the CPU seconds the
recogniser spent per second of audio, and how far behind the speech each word was when it
was first shown (partial) and first committed, counted in stream time plus the decodes' own
time.

Recordings: the eight real clips of ../shared/data/real one by one, all eight joined with
1 s pauses and played twice (a 50 s stream that trims the buffer), twenty RAVDESS clips
joined (one per actor, both statements; 70 s) and twenty more (the other statement, strong
intensity), and synthesised with espeak-ng (synthetic speech: reported apart) two passages
and twelve CMU-MOSI test transcripts with 0.8 s pauses (people's spoken words, a machine's
voice). Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from models.features.audio import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[1]
CHUNK_S, EVERY_S = 0.5, 1.0
BUSY_EVERY_S = 1.5  # a step per session under load: six sessions sharing one recogniser on 2 cores
CONFIGS = {  # name -> (WhisperDecoder context, StreamingASR pause_s, stable_s, seconds between steps)
    "full": ("full", None, None, EVERY_S),
    "fit": ("fit", None, None, EVERY_S),
    "pauses": ("fit", 0.5, None, EVERY_S),
    "stable": ("fit", 0.5, 1.0, EVERY_S),
    "pauses-busy": ("fit", 0.5, None, BUSY_EVERY_S),
    "stable-busy": ("fit", 0.5, 1.0, BUSY_EVERY_S),
    "stable0.7-busy": ("fit", 0.5, 0.7, BUSY_EVERY_S),
    "stable1.5-busy": ("fit", 0.5, 1.5, BUSY_EVERY_S),
}
RAVDESS_SAID = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}
PASSAGES = [
    "i was worried about the interview all week. when i finally got there the people were kind, "
    "they asked good questions, and i think it went really well. i am hoping to hear back soon.",
    "the train was late again this morning and nobody told us why. we stood on the platform in the "
    "cold for forty minutes. honestly it is getting ridiculous and i am thinking of driving instead.",
]


def words(text: str) -> list[str]:
    """Lower case, punctuation and apostrophes dropped (MOSI's transcripts write "didnt")."""
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower().replace("-", " ").replace("'", "")).split()


def mosi_sentences(n: int = 12) -> list[str]:
    """The first ``n`` CMU-MOSI test transcripts of 6 to 20 words without fillers (um, uh)."""
    import csv

    from models.paths import data_root

    out = []
    with open(data_root() / "text" / "mosi.csv", newline="") as f:
        for row in csv.DictReader(f):
            w = row["text"].split()
            if row["split"] == "test" and 6 <= len(w) <= 20 and not {"um", "uh", "uhh", "umm"} & set(w):
                out.append(row["text"])
            if len(out) == n:
                break
    return out


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference words)."""
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)], len(r)


def recordings() -> list[tuple[str, str, np.ndarray, str]]:
    """(set, name, audio, reference) for every recording (see the module docstring)."""
    from models.paths import data_root
    from streaming.evaluate_transcript import real_clips
    from streaming.sources import decode_audio

    out = []
    gap = np.zeros(SAMPLE_RATE, np.float32)
    real = real_clips()
    for name, audio, said in real:
        out.append(("real", name, audio, said))
    joined = np.concatenate([x for _, a, _ in real for x in (a, gap)])
    out.append(("real", "all 8 joined, x2", np.concatenate([joined, joined]), " ".join([s for _, _, s in real] * 2)))
    for other, intensity, name in ((0, "01", "RAVDESS, 20 actors joined"), (1, "02", "RAVDESS, 20 more, strong")):
        rav, said = [], []
        for actor in range(1, 21):
            statement = "01" if (actor + other) % 2 else "02"
            pattern = f"03-01-0[1-8]-{intensity}-{statement}-01-*.flac"
            files = sorted((data_root() / "audio" / "ravdess" / f"Actor_{actor:02d}").glob(pattern))
            if files:
                rav += [decode_audio(files[actor % len(files)]), gap[: SAMPLE_RATE // 2]]
                said.append(RAVDESS_SAID[statement])
        if rav:
            out.append(("acted", name, np.concatenate(rav), " ".join(said)))
    if shutil.which("espeak-ng"):
        import soundfile as sf

        from models.features.audio import to_mono_16k

        def speak(text: str, tmp: str) -> np.ndarray:
            wav = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-w", str(wav), "-s", "150", text], check=True, capture_output=True)
            a, rate = sf.read(str(wav), dtype="float32")
            return to_mono_16k(a, rate)

        with tempfile.TemporaryDirectory() as tmp:
            for k, text in enumerate(PASSAGES):
                out.append(("synthetic", f"espeak passage {k + 1}", np.concatenate([gap, speak(text, tmp), gap]), text))
            said = mosi_sentences()
            pause = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
            mosi = np.concatenate([x for text in said for x in (speak(text, tmp), pause)])
            out.append(("synthetic", "espeak, 12 MOSI test sentences", np.concatenate([gap, mosi]), " ".join(said)))
    return out


def stream(asr, audio: np.ndarray, every_s: float = EVERY_S) -> dict:
    """Stream one recording, a step every ``every_s``; the committed text, decode times and per-word lags."""
    asr.reset()
    chunk, every = round(CHUNK_S * SAMPLE_RATE), round(every_s / CHUNK_S)
    decode_ms, first_seen, first_committed = [], {}, {}
    cpu0 = time.process_time()
    for k, i in enumerate(range(0, len(audio), chunk)):
        asr.push(audio[i : i + chunk], i / SAMPLE_RATE)
        if (k + 1) % every:
            continue
        skipped = asr.skipped
        t0 = time.perf_counter()
        tr = asr.step()
        ms = 1000 * (time.perf_counter() - t0)
        if asr.skipped == skipped:
            decode_ms.append(ms)
        shown_at = (i + chunk) / SAMPLE_RATE + ms / 1000
        for w in tr.committed + tr.partial:  # a word: its text at its (rounded) start
            first_seen.setdefault((round(w.start, 1), w.text.lower()), shown_at - w.end)
        for n, w in enumerate(tr.committed):  # committed words only grow at the end
            first_committed.setdefault(n, shown_at - w.end)
    final = asr.flush()
    return dict(
        text=" ".join(w.text for w in final.committed if not w.suspect),
        cpu_s=time.process_time() - cpu0,
        skipped=asr.skipped,
        decode_ms=decode_ms,
        partial_lag=list(first_seen.values()),
        commit_lag=list(first_committed.values()),
    )


def evaluate(configs: list[str], progress: bool = True) -> dict:
    from models.cpu import single_threaded
    from streaming.asr import StreamingASR
    from streaming.whisper_batch import WhisperDecoder

    single_threaded()  # as in the app
    recs = recordings()
    base = StreamingASR(threads=1)
    res: dict = {"configs": configs, "rows": []}
    for name_ in configs:
        ctx, pause_s, stable_s, every_s = CONFIGS[name_]
        decoder = WhisperDecoder(base.model, context=ctx)
        asr = StreamingASR(whisper=base.model, decoder=decoder, pause_s=pause_s, stable_s=stable_s)
        for kind, name, audio, said in recs:
            t0 = time.perf_counter()
            r = stream(asr, audio, every_s)
            edits, n = wer(said, r["text"])
            res["rows"].append(
                dict(config=name_, set=kind, name=name, seconds=round(len(audio) / SAMPLE_RATE, 1), edits=edits, ref_words=n, **r)
            )
            if progress:
                print(
                    f"{name_:6s} {name[:32]:32s} WER {edits / max(n, 1):.2f}  {time.perf_counter() - t0:5.1f} s  {r['text'][:60]}",
                    flush=True,
                )
    return res


def summary(res: dict) -> list[dict]:
    out = []
    for name in res["configs"]:
        rows = [r for r in res["rows"] if r["config"] == name]
        line = dict(config=name)
        for kind in ("real", "acted", "synthetic"):
            rs = [r for r in rows if r["set"] == kind]
            if rs:
                line[f"wer_{kind}"] = round(sum(r["edits"] for r in rs) / max(1, sum(r["ref_words"] for r in rs)), 3)
        ms = np.concatenate([r["decode_ms"] for r in rows])
        pl = np.concatenate([r["partial_lag"] for r in rows])
        cl = np.concatenate([r["commit_lag"] for r in rows])
        line.update(
            decodes=len(ms),
            skipped=sum(r["skipped"] for r in rows),
            cpu_s_per_audio_s=round(sum(r["cpu_s"] for r in rows) / sum(r["seconds"] for r in rows), 3),
            decode_ms_p50=round(float(np.percentile(ms, 50)), 1),
            decode_ms_p95=round(float(np.percentile(ms, 95)), 1),
            partial_lag_p50=round(float(np.percentile(pl, 50)), 2),
            partial_lag_p95=round(float(np.percentile(pl, 95)), 2),
            commit_lag_p50=round(float(np.percentile(cl, 50)), 2),
            commit_lag_p95=round(float(np.percentile(cl, 95)), 2),
        )
        out.append(line)
    return out


def write(res: dict, out: Path) -> None:
    from streaming.benchmark import machine

    res["summary"] = summary(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    lines = [
        "# Recogniser accuracy and cost: Whisper's 30 s encoder, one sized to the speech, the pause and stable rules",
        "",
        f"Written by `python -m streaming.evaluate_asr` on {machine()}, {time.strftime('%Y-%m-%d')}. "
        "Streamed as live (0.5 s chunks, a step every 1 s, flush at the end), faster-whisper tiny.en int8, "
        "one thread. Configurations: full, Whisper's 30 s encoder; fit, the encoder on the speech plus 2 s "
        "(at least 15 s); pauses, fit with the pause rules (words before a 0.5 s pause committed at once, the "
        "buffer cut in the pause, silence not decoded); stable, pauses with the stable rule (a word ending "
        "1 s or more before the buffer's end committed by the decode that hears it), the app's setting; "
        "-busy, a step every 1.5 s (each of six sessions sharing one recogniser on 2 cores); stable0.7 and "
        "stable1.5, the stable rule at 0.7 s and 1.5 s. WER: word edits over reference "
        "words of the committed, trusted words. CPU: the recogniser's CPU seconds per second of audio. "
        "Lag: seconds from a word's end in the audio to its first showing (partial) or commit, "
        "counting the decodes' own time.",
        "",
        "| config | WER real | WER acted | WER synthetic | decodes | skipped steps | CPU s per audio s | "
        "decode ms p50 | p95 | partial lag s p50 | p95 | commit lag s p50 | p95 |",
        "| --- |" + " --- |" * 12,
    ]
    for s in res["summary"]:
        lines.append(
            f"| {s['config']} | {s.get('wer_real', '')} | {s.get('wer_acted', '')} | {s.get('wer_synthetic', '')} | "
            f"{s['decodes']} | {s['skipped']} | {s['cpu_s_per_audio_s']} | "
            f"{s['decode_ms_p50']} | {s['decode_ms_p95']} | {s['partial_lag_p50']} | {s['partial_lag_p95']} | "
            f"{s['commit_lag_p50']} | {s['commit_lag_p95']} |"
        )
    lines += ["", "| config | recording | s | WER | committed text |", "| --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        lines.append(
            f"| {r['config']} | {r['name']} | {r['seconds']} | {r['edits'] / max(1, r['ref_words']):.2f} | {r['text'][:90]} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "asr-context"))
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    a = p.parse_args(argv)
    res = evaluate(a.configs.split(","))
    write(res, Path(a.out))
    for s in res["summary"]:
        print(s)


if __name__ == "__main__":
    main()
