"""LocalAgreement-2 on word lists: which recognised words are final.

A streaming recogniser decodes its growing audio buffer again and again; each decode gives
a list of ``streaming.types.Word`` with times in pipeline seconds. ``LocalAgreement`` keeps
what has been decided (after "whisper_streaming", Machacek et al. 2023):

- ``committed``: the final words, each given once, with non-decreasing times;
- ``pending``: the previous decode's words after the committed ones (may still change).

``update(words)`` takes one decode: its words after the committed ones (by time, then with a
repeated n-gram at the seam removed) are the *hypothesis*; the longest common prefix of the
hypothesis and ``pending`` (compared without case or punctuation) is committed, the rest
becomes ``pending``. ``update(words, settled=t)`` also commits the hypothesis's words that
begin before ``t``, where the speaker paused (their speech is over: a second decode would
only repeat them), their ends held to ``t``. ``update(words, stable=t)`` commits the
hypothesis's leading words that end by ``t``, well before the end of the decoded audio: with
that much speech heard after them a second decode would rarely change them, and under load
a second decode may be seconds away. ``update(words, final=True)`` takes the stream's last decode as
``pending`` as it is; ``flush(t)`` (or ``commit_before(t)`` when audio before ``t`` is
dropped) commits pending words that end by ``t``. Words keep their ``suspect`` reason
(``streaming.transcript_trust``) when committed. ``cut_point`` says where a long audio
buffer can be cut without losing an undecided word, ``pause_cut`` where a buffer can be cut
inside a pause. No audio and no recogniser here.
"""

from __future__ import annotations

import math

from streaming.transcript_trust import norm
from streaming.types import Word

SENTENCE_END = (".", "?", "!")
SEAM_WORDS = 5  # the last committed words a decode's hypothesis may repeat at its start
SEAM_S = 0.1  # a decoded word starting this close before the last committed end still counts as new


class LocalAgreement:
    """Committed and pending words of one stream (see the module docstring). ``history_s``:
    committed words ending this long before the newest one are forgotten (0: keep all)."""

    def __init__(self, history_s: float = 600.0) -> None:
        self.history_s = history_s
        self.reset()

    def reset(self) -> None:
        """Forget every word."""
        self.committed: list[Word] = []
        self.pending: list[Word] = []
        self._sentence_ends: list[float] = []  # end times of committed sentence-final words

    @property
    def committed_end(self) -> float:
        """End time of the last committed word; -inf before the first."""
        return self.committed[-1].end if self.committed else -math.inf

    def hypothesis(self, words: list[Word], audio_from: float | None = None) -> list[Word]:
        """The decoded ``words`` past the committed ones: those starting after the last
        committed word (less ``SEAM_S``), without a leading repeat of up to ``SEAM_WORDS``
        of the last committed words, their times moved to no earlier than its end.
        ``audio_from``: where the decoded audio began; when the committed words all end
        before it, the decode cannot have heard them again, and a leading repeat is a
        person saying it again (no repeat is removed)."""
        if not self.committed:
            return list(words)
        last_end = self.committed_end
        new = [w for w in words if w.start > last_end - SEAM_S]
        tail = [norm(w.text) for w in self.committed[-SEAM_WORDS:]]
        heard_again = audio_from is None or last_end > audio_from
        for n in range(min(len(tail), len(new)) if heard_again else 0, 0, -1):
            if tail[-n:] == [norm(w.text) for w in new[:n]]:
                new = new[n:]
                break
        return [Word(w.text, max(w.start, last_end), max(w.end, last_end), w.probability, w.suspect) for w in new]

    def update(
        self,
        words: list[Word],
        final: bool = False,
        settled: float | None = None,
        audio_from: float | None = None,
        stable: float | None = None,
    ) -> list[Word]:
        """One decode's words (of audio from ``audio_from``, see ``hypothesis``). Commits the
        hypothesis's agreement with ``pending``, its words beginning before ``settled`` and
        its leading words ending by ``stable`` (with ``final``: nothing, the hypothesis
        becomes ``pending`` as it is, for ``flush``); returns the words committed now."""
        hyp = self.hypothesis(words, audio_from)
        if final:
            self.pending = hyp
            return []
        k = 0
        while k < min(len(hyp), len(self.pending)) and norm(hyp[k].text) == norm(self.pending[k].text):
            k += 1
        if settled is not None:
            before = 0
            while before < len(hyp) and hyp[before].start < settled:
                before += 1
            if before > k:  # the speech of these words is over: their ends lie in it
                hyp = [
                    Word(w.text, w.start, min(w.end, max(settled, w.start)), w.probability, w.suspect) if i < before else w
                    for i, w in enumerate(hyp)
                ]
                k = before
        if stable is not None:
            while k < len(hyp) and hyp[k].end <= stable:
                k += 1
        done = self._commit(hyp[:k])
        self.pending = hyp[k:]
        return done

    def commit_before(self, t: float) -> list[Word]:
        """The audio before ``t`` is gone: pending words ending by ``t`` are committed, those
        reaching across ``t`` are dropped; returns the words committed."""
        done = self._commit([w for w in self.pending if w.end <= t])
        self.pending = [w for w in self.pending if w.start >= t and w.end > t]
        return done

    def flush(self, t: float = math.inf) -> list[Word]:
        """End of stream at ``t``: every pending word ending by ``t`` is committed and
        ``pending`` is emptied; returns the words committed."""
        done = self.commit_before(t)
        self.pending = []
        return done

    def cut_point(self, start: float, end: float, trim_s: float, max_s: float) -> float | None:
        """Where to cut an audio buffer over [start, end) that is longer than ``trim_s``:
        the end of the latest committed sentence inside it; past the middle of ``trim_s``
        and ``max_s``, the end of the latest committed word; with nothing pending (silence
        or committed words only), all but the last 2 s. None: keep it all for now."""
        self._sentence_ends = [e for e in self._sentence_ends if e > start]  # cut away already
        if end - start <= trim_s:
            return None
        inside = [e for e in self._sentence_ends if e <= end]
        cut = inside[-1] if inside else None
        last = self.committed_end
        if cut is None and end - start > (trim_s + max_s) / 2 and start < last:
            cut = last
        if cut is None and not self.pending:
            cut = max(min(last, end), end - 2.0)
        return cut if cut is not None and cut > start else None

    def pause_cut(self, start: float, pause: tuple[float, float], lead_s: float) -> float | None:
        """Where to cut a buffer beginning at ``start`` inside ``pause`` (the speaker stopped
        at ``pause[0]`` and resumed, or the audio ends, at ``pause[1]``): ``lead_s`` before
        the resumption, not before the pause; None when a pending word begins before that
        or the cut would not shorten the buffer."""
        cut = max(pause[0], pause[1] - lead_s)
        if cut <= start or any(w.start < cut for w in self.pending):
            return None
        return cut

    def _commit(self, words: list[Word]) -> list[Word]:
        """Appends words to ``committed`` with non-decreasing times; returns them as committed."""
        done = []
        for w in words:
            start = max(w.start, self.committed_end)
            c = Word(w.text, start, max(w.end, start), w.probability, w.suspect)
            self.committed.append(c)
            done.append(c)
            if c.text.endswith(SENTENCE_END):
                self._sentence_ends.append(c.end)
        if self.committed and self.history_s:
            horizon = self.committed[-1].end - self.history_s
            if self.committed[0].end < horizon:
                self.committed = [w for w in self.committed if w.end >= horizon]
        return done
