"""Whisper decodes of several streams in one batch, with the encoder sized to the speech.

``WhisperDecoder(whisper).decode_many([(audio, prompt), ...])`` -> one ``Decoded`` per
request: the words (seconds into that audio, with probabilities), each segment's mean log
probability and no-speech probability, and the speech spans the voice-activity detector
found. ``decode(audio, prompt)`` is the same for one stream. A request may carry its speech
spans as a third item, ``(audio, prompt, spans)`` (``[(start, end)]`` in samples, as
``streaming.vad.speech_spans`` gives them): the streaming recogniser computes them
incrementally (``streaming.vad.SpeechDetector``), and the detector is not run again here. This is what
``faster_whisper.WhisperModel.transcribe`` does for one short buffer with our options
(greedy, temperature 0, voice-activity filter, word timestamps, no conditioning but the
initial prompt), with two changes measured in ``docs/performance.md``:

- **Several streams per call.** The sessions' buffers are encoded, decoded (each with its
  own prompt) and aligned as one CTranslate2 batch, so one shared recogniser serves them all.
- **An encoder sized to the speech.** Whisper pads every input to 30 s and its encoder
  costs the same for 2 s of speech as for 30. CTranslate2 runs the encoder on fewer
  frames; here on the speech kept by the voice-activity filter plus ``pad_s`` (2 s) of
  silence, at least ``min_s`` (15 s), rounded up to whole seconds (``context="fit"``).
  Without the tail of silence the decoder loops at the cut; below about 15 s tiny.en loops
  on short clips (``python -m streaming.evaluate_asr``, docs/asr-context.md: 8 s and 10 s
  floors repeated lines, 15 s gave real-clip WER 0.28 against 0.33 with 30 s, at a third
  of the decode time). ``context="full"`` keeps Whisper's 30 s.

A decode stops after ``TOKENS_PER_S`` tokens per second of the speech it reads (plus
``TOKENS_SLACK``): fast speech takes about 6 a second with the timestamps, so nothing said
is cut, but a decode that loops (tiny.en does, now and then) stops there instead of running
on to Whisper's 448 tokens, seconds of CPU that the other sessions' decodes in its batch
wait for (its words are then suspect to ``streaming.transcript_trust`` anyway).

The prompt (the committed text before the buffer) is cut to its last ``prompt_tokens``
tokens: CTranslate2 batches only prompts of one length, so requests are grouped by it (and
by encoder size, so that a request is decoded as it would be alone), and most prompts,
once long enough, share that length.

It uses faster-whisper's own pieces for the prompt, segment splitting and word alignment
(``get_prompt``, ``_split_segments_by_timestamps``, ``add_word_timestamps``;
faster-whisper is pinned at 1.2.1). The speech spans come with the request, or, for a
request without them, from ``streaming.vad`` over the whole audio (the same Silero model
and the same spans as faster-whisper's filter): they both filter the audio and go back to
the caller for the trust checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from models.features.audio import SAMPLE_RATE

FRAMES_PER_S = 100  # Whisper's log-mel frames per second
TOKENS_PER_S, TOKENS_SLACK = 10, 10  # the most tokens a decode may write per second of speech, and beyond
FULL_FRAMES = 3000  # its 30 s window

# faster-whisper's transcribe() defaults, which StreamingASR used
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
_MAX_INITIAL_TIMESTAMP_S = 1.0
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class DecodedWord:
    text: str
    start: float  # seconds into the request's audio
    end: float
    probability: float


@dataclass
class DecodedSegment:
    words: list[DecodedWord]
    avg_logprob: float
    no_speech_prob: float


@dataclass
class Decoded:
    """One request's result. ``speech``: the detector's speech spans (s into the audio), or
    None when the detector could not run (then the whole audio was decoded)."""

    segments: list[DecodedSegment] = field(default_factory=list)
    speech: list[tuple[float, float]] | None = None
    frames: int = 0  # encoder frames this request was decoded with (0: nothing to decode)


class WhisperDecoder:
    """Batched decodes on one loaded ``faster_whisper.WhisperModel`` (see the module docstring).

    ``context``: "fit" (encoder on the speech plus ``pad_s``) or "full" (30 s).
    Thread-safe as far as CTranslate2 is (calls may overlap; each is one batch).
    """

    def __init__(
        self,
        whisper,
        language: str = "en",
        beam_size: int = 1,
        context: str = "fit",
        pad_s: float = 2.0,
        min_s: float = 15.0,
        prompt_tokens: int = 32,
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if context not in ("fit", "full"):
            raise ValueError(f"context must be 'fit' or 'full', got {context!r}")
        if not 0 <= pad_s <= 30:
            raise ValueError(f"pad_s must be in [0, 30] s, got {pad_s}")
        self.whisper = whisper
        self.beam_size = beam_size
        self.context, self.pad_s, self.min_s = context, pad_s, min_s
        self.prompt_tokens = prompt_tokens
        self.tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe", language=language)
        self._suppress = get_suppressed_tokens(self.tokenizer, [-1])

    def decode(self, audio: np.ndarray, prompt: str | None = None) -> Decoded:
        return self.decode_many([(audio, prompt)])[0]

    def __call__(self, request: tuple) -> Decoded:
        """``decode`` of one ``(audio, prompt[, spans])``: the call a ``models.batcher.Batcher`` takes."""
        return self.decode_many([request])[0]

    def decode_many(self, requests: list[tuple]) -> list[Decoded]:
        """One ``Decoded`` per ``(audio, prompt)`` or ``(audio, prompt, spans)``: float32 mono
        16 kHz audio of at most 30 s; ``spans`` (samples) when the caller detected the speech."""
        out, todo = [], []
        for i, request in enumerate(requests):
            audio, prompt, spans = (*request, None)[:3]
            audio = np.asarray(audio, np.float32)
            if audio.ndim != 1 or len(audio) > FULL_FRAMES * SAMPLE_RATE // FRAMES_PER_S:
                raise ValueError(f"audio must be mono and at most 30 s, got shape {audio.shape}")
            speech, chunks = self._speech(audio) if spans is None else _given(spans, len(audio))
            out.append(Decoded(speech=speech))
            if chunks == []:  # the detector heard no speech: nothing to decode
                continue
            kept = np.concatenate([audio[c["start"] : c["end"]] for c in chunks]) if chunks else audio
            if len(kept) < SAMPLE_RATE // FRAMES_PER_S * 2:
                continue
            feats = self.whisper.feature_extractor(kept)  # transcribe() also leaves the last frame out
            todo.append((i, feats, min(feats.shape[-1] - 1, FULL_FRAMES), chunks, self._prompt(prompt)))
        # CTranslate2 batches prompts of one length only; and one encoder size per batch: a
        # request is decoded as it would be alone
        groups: dict[tuple[int, int], list] = {}
        for item in todo:
            groups.setdefault((len(item[4]), self._frames(item[2])), []).append(item)
        for group in groups.values():
            self._run(group, out)
        return out

    # -- internals --

    def _prompt(self, prompt: str | None) -> list[int]:
        """The prompt's last ``prompt_tokens`` tokens (so that most prompts share a length)."""
        if not prompt or not prompt.strip():
            return []
        return self.tokenizer.encode(" " + prompt.strip())[-self.prompt_tokens :]

    @staticmethod
    def _speech(audio: np.ndarray) -> tuple[list[tuple[float, float]] | None, list[dict] | None]:
        """(speech spans in s, detector chunks in samples) of a request that came without its
        spans, by the streaming recogniser's own detector over the whole audio; (None, None)
        when it cannot run."""
        from streaming.vad import SpeechDetector, speech_spans

        try:
            spans = speech_spans(SpeechDetector().probs(audio), len(audio))
        except Exception:  # the decode goes on over all the audio, the trust check is skipped
            return None, None
        return _given(spans, len(audio))

    def _frames(self, content: int) -> int:
        if self.context == "full":
            return FULL_FRAMES
        want = max(content + self.pad_s * FRAMES_PER_S, self.min_s * FRAMES_PER_S)
        return int(min(FULL_FRAMES, math.ceil(want / FRAMES_PER_S) * FRAMES_PER_S))

    def _run(self, todo: list, out: list[Decoded]) -> None:
        import ctranslate2
        from faster_whisper.vad import SpeechTimestampsMap

        w, tok = self.whisper, self.tokenizer
        feats = [f for _, f, _, _, _ in todo]
        content = [n for _, _, n, _, _ in todo]
        frames = self._frames(content[0])  # the group's one encoder size
        batch = np.zeros((len(feats), feats[0].shape[0], frames), np.float32)
        for row, f, n in zip(batch, feats, content):
            row[:, : min(n, frames)] = f[:, : min(n, frames)]
        encoded = w.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)
        prompts = [w.get_prompt(tok, previous) for _, _, _, _, previous in todo]
        # CTranslate2's max_length counts the prompt too
        budget = max(len(p) + math.ceil(TOKENS_PER_S * n / FRAMES_PER_S) + TOKENS_SLACK for p, n in zip(prompts, content))
        results = w.model.generate(
            encoded,
            prompts,
            beam_size=self.beam_size,
            patience=1,
            length_penalty=1,
            max_length=min(w.max_length, budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=int(round(_MAX_INITIAL_TIMESTAMP_S / w.time_precision)),
        )
        segmented, sizes = [], []
        for r, n in zip(results, content):
            tokens = r.sequences_ids[0]
            avg_logprob = r.scores[0] * len(tokens) / (len(tokens) + 1)
            skip = r.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob <= _LOG_PROB_THRESHOLD
            segmented.append([] if skip else self._segments(tokens, n, avg_logprob, r.no_speech_prob))
            sizes.append(n)
        if any(segmented):
            # every row aligns (CTranslate2 aligns the batch as one); rows without text get a
            # placeholder and their words are dropped below
            rows = [s or [dict(seek=0, start=0.0, end=0.0, tokens=[tok.eot], placeholder=True)] for s in segmented]
            w.add_word_timestamps(rows, tok, encoded, sizes, _PREPEND, _APPEND, 0.0)
        for (i, _, _, chunks, _), segs in zip(todo, segmented):
            out[i].frames = frames
            restore = SpeechTimestampsMap(chunks, SAMPLE_RATE) if chunks else None
            for s in segs:
                words = []
                for wd in s.get("words", []):
                    start, end = wd["start"], wd["end"]
                    if restore is not None:
                        k = restore.get_chunk_index((start + end) / 2)
                        start, end = restore.get_original_time(start, k), restore.get_original_time(end, k)
                    words.append(DecodedWord(wd["word"], float(start), float(end), float(wd["probability"])))
                out[i].segments.append(DecodedSegment(words, s["avg_logprob"], s["no_speech_prob"]))

    def _segments(self, tokens: list[int], content: int, avg_logprob: float, no_speech: float) -> list[dict]:
        """Split one decode at its timestamp tokens (faster-whisper's splitter); text after the
        last timestamp pair, which transcribe() would decode again from there, is kept as a
        segment running to the end of the speech."""
        w, tok = self.whisper, self.tokenizer
        dur = content / FRAMES_PER_S
        segs, _, single_end = w._split_segments_by_timestamps(
            tokenizer=tok, tokens=tokens, time_offset=0.0, segment_size=content, segment_duration=dur, seek=0
        )
        used = sum(len(s["tokens"]) for s in segs)
        rest = [t for t in tokens[used:] if t < tok.eot]
        if not single_end and rest and used and tokens[used - 1] >= tok.timestamp_begin:
            start = (tokens[used - 1] - tok.timestamp_begin) * w.time_precision
            segs.append(dict(seek=0, start=start, end=dur, tokens=tokens[used:]))
        keep = []
        for s in segs:
            if not tok.decode([t for t in s["tokens"] if t < tok.eot]).strip():
                continue
            s.update(avg_logprob=float(avg_logprob), no_speech_prob=float(no_speech))
            keep.append(s)
        return keep


def _given(spans, n: int) -> tuple[list[tuple[float, float]], list[dict]]:
    """(speech spans in s, detector chunks in samples) from spans the caller detected."""
    chunks = []
    for a, b in spans:
        a, b = max(0, int(a)), min(n, int(b))
        if b <= a:
            raise ValueError(f"speech span ({a}, {b}) is empty or outside the {n} samples of audio")
        chunks.append({"start": a, "end": b})
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks], chunks


__all__ = ["Decoded", "DecodedSegment", "DecodedWord", "WhisperDecoder"]
