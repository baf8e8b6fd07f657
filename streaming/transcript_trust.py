"""Is a recognised word really said? Hallucination checks on the recogniser's output.

Whisper, the tiny model above all, writes text nobody said: a word looped dozens of times
("interesting, interesting, ..."), a stock phrase on silence or noise ("Thank you."), a line
squeezed into a second. None of the checks below knows a particular phrase; each reads a
property that real speech has and a hallucination lacks:

- ``repeat_runs``: a word or short phrase (up to ``MAX_NGRAM`` words) said ``MIN_REPEATS``
  times or more in a row; a single word always counts as a loop, a phrase only when its
  repeats come faster than a person says them (``flag_repeats``). The first saying is
  kept; the repeats are suspect.
- compression ratio (as faster-whisper computes it, on the segment's own text): a
  repetitive segment (ratio above ``MAX_COMPRESSION``) is suspect only when its timing
  does not look like speech, too fast or mostly outside the voice activity; a real
  sentence said again (a looped recording) keeps its words.
- no-speech probability: Whisper's own rule, ``no_speech_prob`` above ``NO_SPEECH_PROB``
  with ``avg_logprob`` below ``LOW_LOGPROB``.
- speech rate: more than ``MAX_WORDS_PER_S`` words a second over a segment of at least
  ``MIN_RATE_WORDS`` words.
- voice activity: a word whose time span lies mostly outside the speech the voice-activity
  detector found in the same audio (``speech_share`` under ``MIN_VOICED_SHARE``).

``judge_segment`` applies them to one decoded segment and returns one reason per word (""
for a trusted word). The pipeline applies ``repeat_runs`` again across a window's words, so
a loop spread over several segments is caught too (``flag_repeats``), and reads only the
trusted ones (``sort_window_words``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_NGRAM = 4  # phrases up to this many words are checked for loops
MIN_REPEATS = 4  # said this many times in a row (or more) -> a loop
MAX_COMPRESSION = 2.4  # faster-whisper's threshold for a repetitive decode
NO_SPEECH_PROB = 0.6  # Whisper's no-speech rule, with LOW_LOGPROB
LOW_LOGPROB = -1.0
MAX_WORDS_PER_S = 7.0  # fast speech is about 4-5 words a second
LOOP_WORDS_PER_S = 4.0  # a phrase repeated faster than this is a loop, not a person repeating it
MIN_RATE_WORDS = 6
MIN_VOICED_SHARE = 0.3  # a word mostly outside the detected speech is not trusted
VAD_PAD_S = 0.25  # detected speech spans widened by this much (word times are rough)


def norm(text: str) -> str:
    """Word text for comparing words: lower case, punctuation dropped."""
    return re.sub(r"[^\w']", "", text.lower())


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression (faster-whisper's measure): about
    1 for ordinary text, above 2.4 for text that repeats itself."""
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0


def repeat_runs(tokens: Sequence[str], max_n: int = MAX_NGRAM, min_repeats: int = MIN_REPEATS) -> list[tuple[int, int, int]]:
    """Loops in a token list: (start, n, repeats) for every run of one n-gram (n <= max_n)
    said ``min_repeats`` times or more in a row; the repeats are tokens
    ``start + n .. start + n * repeats - 1``. Runs do not overlap; shorter n-grams win."""
    runs = []
    covered = np.zeros(len(tokens), bool)
    for n in range(1, max_n + 1):
        i = 0
        while i + n <= len(tokens):
            unit = list(tokens[i : i + n])
            reps = 1
            while tokens[i + reps * n : i + (reps + 1) * n] == unit:
                reps += 1
            if reps >= min_repeats and not covered[i : i + n * reps].any() and all(unit):
                runs.append((i, n, reps))
                covered[i : i + n * reps] = True
                i += n * reps
            else:
                i += 1
    return sorted(runs)


def flag_repeats(
    words: Sequence[str], reasons: list[str] | None = None, times: Sequence[tuple[float, float]] | None = None
) -> list[str]:
    """One reason per word: the repeats of every loop in ``words`` (texts) are marked
    "recogniser loop ('x' said N times in a row)"; ``reasons`` already given are kept.

    A single word said ``MIN_REPEATS`` times in a row is a loop. A longer phrase said again
    and again is a loop only when the repeats come faster than ``LOOP_WORDS_PER_S`` (given
    ``times``, (start, end) per word): a person who says a sentence four times takes the time
    to say it, a recogniser that loops does not."""
    out = list(reasons) if reasons is not None else [""] * len(words)
    toks = [norm(w) for w in words]
    for start, n, reps in repeat_runs(toks):
        last = start + n * reps - 1
        if n > 1 and times is not None:
            span = max(times[last][1] - times[start][0], 1e-3)
            if n * reps / span <= LOOP_WORDS_PER_S:
                continue  # said again at the pace of speech
        phrase = " ".join(toks[start : start + n])
        why = f"recogniser loop ('{phrase}' said {reps} times in a row)"
        for j in range(start + n, last + 1):
            out[j] = out[j] or why
    return out


@dataclass(frozen=True)
class WindowWords:
    """A window's recognised words sorted by trust (``sort_window_words``)."""

    trusted: list  # the ``streaming.types.Word``s the model reads, in order
    committed: str  # the trusted committed words, as text
    partial: str  # the trusted partial words (may still change), as text
    suppressed: str  # the words not trusted as said, as text
    reasons: list[str]  # why each suppressed word is not trusted

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.trusted).strip()


def sort_window_words(committed: Sequence, partial: Sequence) -> WindowWords:
    """The window's committed and partial words (``streaming.types.Word``: text, start,
    end, suspect), each already marked ``suspect`` when its segment failed a check, with
    loops across them marked too (``flag_repeats``), sorted into trusted and suppressed."""
    words = [*committed, *partial]
    reasons = flag_repeats([w.text for w in words], [w.suspect for w in words], [(w.start, w.end) for w in words])
    n = len(committed)

    def text(ws, whys, trusted: bool) -> str:
        return " ".join(w.text.strip() for w, why in zip(ws, whys) if bool(why) != trusted)

    return WindowWords(
        trusted=[w for w, why in zip(words, reasons) if not why],
        committed=text(words[:n], reasons[:n], True),
        partial=text(words[n:], reasons[n:], True),
        suppressed=text(words, reasons, False),
        reasons=[why for why in reasons if why],
    )


def speech_share(start: float, end: float, spans: Sequence[tuple[float, float]], pad: float = VAD_PAD_S) -> float:
    """Share of [start, end] inside the speech spans (each widened by ``pad``); a word of no
    length counts as voiced when its instant is."""
    if end <= start:
        return float(any(a - pad <= start <= b + pad for a, b in spans))
    inside = sum(max(0.0, min(end, b + pad) - max(start, a - pad)) for a, b in spans)
    return min(1.0, inside / (end - start))


def judge_segment(
    words: Sequence[tuple[str, float, float]],
    avg_logprob: float | None,
    no_speech_prob: float | None,
    speech: Sequence[tuple[float, float]] | None,
) -> list[str]:
    """One reason per word of one decoded segment ("" = trusted).

    ``words``: (text, start, end) in seconds; ``speech``: the voice-activity detector's
    speech spans over the same audio, same time base (None: not checked).
    """
    n = len(words)
    if n == 0:
        return []
    texts = [w[0] for w in words]
    if no_speech_prob is not None and avg_logprob is not None and no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
        return [f"no speech (Whisper's no-speech probability {no_speech_prob:.2f})"] * n
    span = max(words[-1][2] - words[0][1], 1e-3)
    rate = n / span
    if n >= MIN_RATE_WORDS and rate > MAX_WORDS_PER_S:
        return [f"implausible speech rate ({rate:.0f} words/s)"] * n
    voiced = [1.0] * n if speech is None else [speech_share(s, e, speech) for _, s, e in words]
    ratio = compression_ratio(" ".join(t.strip() for t in texts))
    if ratio > MAX_COMPRESSION and (rate > MAX_WORDS_PER_S / 2 or np.mean(voiced) < 0.5):
        return [f"repetitive decode (compression ratio {ratio:.1f})"] * n
    reasons = ["" if v >= MIN_VOICED_SHARE else "no voice activity under the word" for v in voiced]
    return flag_repeats(texts, reasons, [(s, e) for _, s, e in words])
