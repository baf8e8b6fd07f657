"""LocalAgreement-2 on plain word lists: no recogniser, no audio, no espeak-ng."""

import math

import pytest

from streaming.local_agreement import LocalAgreement
from streaming.types import Word


def words(text: str, start: float = 0.0, step: float = 0.5, suspect: dict[int, str] | None = None) -> list[Word]:
    """One word every ``step`` s from ``start``, each ``0.8 * step`` long."""
    out = []
    for i, w in enumerate(text.split()):
        t = start + i * step
        out.append(Word(w, t, t + 0.8 * step, 0.9, (suspect or {}).get(i, "")))
    return out


def texts(ws: list[Word]) -> list[str]:
    return [w.text for w in ws]


def test_two_agreeing_hypotheses_commit_their_common_prefix():
    la = LocalAgreement()
    assert la.update(words("the weather")) == []  # a first decode commits nothing
    assert texts(la.pending) == ["the", "weather"] and la.committed == []
    done = la.update(words("the weather today is"))
    assert texts(done) == ["the", "weather"] == texts(la.committed)
    assert texts(la.pending) == ["today", "is"]


def test_agreement_ignores_case_and_punctuation():
    la = LocalAgreement()
    la.update(words("Hello, world"))
    la.update(words("hello world."))
    assert texts(la.committed) == ["hello", "world."]  # the newer decode's spelling is kept


def test_a_changed_word_stops_the_commit():
    la = LocalAgreement()
    la.update(words("i went to the market"))
    done = la.update(words("i want to the market"))
    assert texts(done) == ["i"]
    assert texts(la.pending) == ["want", "to", "the", "market"]
    # the next decode agrees with the corrected one: the rest is committed
    la.update(words("i want to the market today"))
    assert texts(la.committed) == ["i", "want", "to", "the", "market"]
    assert texts(la.pending) == ["today"]


def test_final_flush_commits_the_rest():
    la = LocalAgreement()
    la.update(words("the meeting is"))
    la.update(words("the meeting is at ten"))
    assert texts(la.committed) == ["the", "meeting", "is"]
    la.update(words("the meeting is at ten in the morning"), final=True)  # the last decode
    assert texts(la.committed) == ["the", "meeting", "is"]  # a final decode only sets pending
    assert texts(la.pending) == ["at", "ten", "in", "the", "morning"]
    done = la.flush(10.0)
    assert texts(done) == ["at", "ten", "in", "the", "morning"]
    assert texts(la.committed) == "the meeting is at ten in the morning".split() and la.pending == []
    assert la.flush() == []  # nothing left


def test_committed_words_are_not_duplicated():
    la = LocalAgreement()
    la.update(words("one two three"))
    la.update(words("one two three four"))
    assert texts(la.committed) == ["one", "two", "three"]
    # a later decode of a trimmed buffer starts again at the committed words, with a
    # repeated seam: the committed ones are neither given again nor moved
    again = words("two three four five", start=0.5)
    assert texts(la.hypothesis(again)) == ["four", "five"]
    # the same words placed later (a shifted decode): the repeated seam is dropped
    assert texts(la.hypothesis(words("three four five", start=1.5))) == ["four", "five"]
    la.update(again)
    la.update(words("two three four five six", start=0.5))
    assert texts(la.committed) == ["one", "two", "three", "four", "five"]
    # words by time: those before the last committed end are left out
    la2 = LocalAgreement()
    la2.update(words("a b c"))
    la2.update(words("a b c"))
    assert texts(la2.hypothesis(words("a b c d"))) == ["d"]
    assert all(w.start >= la2.committed_end for w in la2.hypothesis(words("x y z d", start=0.9)))


def test_committed_times_never_decrease():
    la = LocalAgreement()
    hyp = [Word("late", 2.0, 2.5), Word("early", 1.0, 1.2), Word("after", 3.0, 3.4)]
    la.update(hyp)
    la.update(hyp)
    for a, b in zip(la.committed, la.committed[1:]):
        assert a.end <= b.start
    assert all(w.start <= w.end for w in la.committed)


def test_suspect_words_keep_their_reason_when_committed():
    la = LocalAgreement()
    loop = {2: "recogniser loop", 3: "recogniser loop"}
    la.update(words("thank you thank you", suspect=loop))
    la.update(words("thank you thank you so", suspect=loop))
    assert [w.suspect for w in la.committed] == ["", "", "recogniser loop", "recogniser loop"]
    assert texts(la.pending) == ["so"]
    # the agreement compares the words, not their trust: a word that turns suspect still agrees
    la2 = LocalAgreement()
    la2.update(words("hello there"))
    la2.update(words("hello there", suspect={1: "no voice activity under the word"}))
    assert [w.suspect for w in la2.committed] == ["", "no voice activity under the word"]


def test_commit_before_a_cut_and_dropped_words():
    la = LocalAgreement()
    la.update(words("a b c d"))  # pending: a 0-0.4, b 0.5-0.9, c 1.0-1.4, d 1.5-1.9
    done = la.commit_before(1.2)  # the audio before 1.2 s is gone
    assert texts(done) == ["a", "b"]
    assert texts(la.pending) == ["d"]  # c reaches across the cut: dropped


def test_cut_point():
    la = LocalAgreement()
    assert la.cut_point(0.0, 10.0, trim_s=15.0, max_s=25.0) is None  # short buffer: kept
    sentence = words("it rained. then the sun came", start=0.0, step=1.0)
    la.update(sentence)
    la.update(sentence)  # "rained." ends at 1.8 s
    assert la.cut_point(0.0, 16.0, 15.0, 25.0) == pytest.approx(1.8)  # the latest committed sentence
    # a sentence end cut away already does not count; nothing pending: all but the last 2 s
    assert la.cut_point(2.0, 18.0, 15.0, 25.0) == pytest.approx(16.0)
    # no sentence end inside, past the middle of trim and max: the latest committed word
    la2 = LocalAgreement()
    ws = words("no full stop here at all", step=1.0)
    la2.update(ws)
    la2.update(ws + words("more", start=6.0))
    assert la2.pending and la2.cut_point(0.0, 21.0, 15.0, 25.0) == pytest.approx(la2.committed_end)
    assert la2.cut_point(0.0, 16.0, 15.0, 25.0) is None  # words pending, not long enough yet
    # nothing pending: all but the last 2 s
    la3 = LocalAgreement()
    assert la3.cut_point(0.0, 16.0, 15.0, 25.0) == pytest.approx(14.0)


def test_history_is_bounded():
    la = LocalAgreement(history_s=5.0)
    ws = words(" ".join(f"w{i}" for i in range(40)), step=1.0)
    la.update(ws)
    la.update(ws)
    assert texts(la.committed)[-1] == "w39" and len(la.committed) < 40
    assert la.committed[0].end >= la.committed_end - 5.0  # the older words are forgotten
    la.reset()
    assert la.committed == [] and la.pending == [] and la.committed_end == -math.inf


def test_words_before_a_pause_are_committed_by_one_decode():
    la = LocalAgreement()
    hyp = words("don't forget a jacket", 0.0) + words("also i", 3.0)
    done = la.update(hyp, settled=2.0)  # the speaker stopped at 2.0 s
    assert texts(done) == ["don't", "forget", "a", "jacket"] and texts(la.pending) == ["also", "i"]
    assert la.committed[-1].end <= 2.0  # held inside the speech: the next words are not taken as repeats
    # a later decode agrees as usual
    assert texts(la.update(words("also i was", 3.0))) == ["also", "i"]


def test_a_pause_cut_needs_nothing_pending_before_it():
    la = LocalAgreement()
    la.update(words("one two", 0.0), settled=1.0)
    assert la.pause_cut(0.0, (1.0, 2.5), lead_s=0.5) == pytest.approx(2.0)  # 0.5 s before the speech resumes
    assert la.pause_cut(0.0, (1.0, 1.2), lead_s=0.5) == pytest.approx(1.0)  # not before the pause
    assert la.pause_cut(2.5, (1.0, 2.5), lead_s=0.5) is None  # would not shorten the buffer
    la.update(words("three", 1.5))
    assert la.pending and la.pause_cut(0.0, (1.0, 2.5), lead_s=0.5) is None  # "three" would be lost


def test_a_sentence_said_again_after_a_cut_is_not_a_seam_repeat():
    la = LocalAgreement()
    la.update(words("don't forget a jacket", 0.0), settled=2.0)
    again = words("don't forget a jacket", 2.6)
    # the decoded audio began at 2.5 s, after every committed word: the words are new
    la.update(again, settled=4.6, audio_from=2.5)
    assert texts(la.committed) == ["don't", "forget", "a", "jacket"] * 2
    la2 = LocalAgreement()
    la2.update(words("don't forget a jacket", 0.0), settled=2.0)
    la2.update(words("jacket and", 1.95), audio_from=0.0)  # the same audio heard again: a repeat
    assert texts(la2.pending) == ["and"]


def test_words_well_before_the_decoded_end_are_committed_by_one_decode():
    la = LocalAgreement()
    hyp = words("i think it went really well")  # ends at 0.4, 0.9, ..., 2.9 s
    done = la.update(hyp, stable=1.5)  # the decoded audio ran to 2.5 s: 1 s after 1.5 s
    assert texts(done) == ["i", "think", "it"] and texts(la.pending) == ["went", "really", "well"]
    # the rest still needs a second decode that agrees
    assert texts(la.update(words("i think it went really well"), stable=1.9)) == ["went", "really", "well"]


def test_the_stable_rule_commits_a_prefix_only():
    la = LocalAgreement()
    hyp = words("kids are talking")
    hyp[1] = Word("are", 0.5, 3.0, 0.9, "")  # a word reaching past the stable point stops the rule
    done = la.update(hyp, stable=2.0)
    assert texts(done) == ["kids"] and texts(la.pending) == ["are", "talking"]
    assert la.update(words("by the door", 5.0), final=True) == [] and texts(la.committed) == ["kids"]
