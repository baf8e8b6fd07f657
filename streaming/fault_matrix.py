"""The fault matrix (issue 12): every fault kind on every modality it applies to, alone and
together, replayed through the real pipeline and checked window by window.

    python -m streaming.fault_matrix [--clips demo,real] [--out docs/fault-matrix]

A *cell* is a set of (modality, kind) faults applied together over one interval
[start, end) of the clip. Text takes one kind, the recogniser outage, which stands in for
"drop" on text, so "drop on all three" is vision:drop, audio:drop and text:outage at once.
The full matrix (``matrix_cells``) is every non-empty set of modalities with every kind
that applies to each of them: five kinds on vision, audio, and vision + audio; drop on the
pairs with text and on all three; the outage on text alone (19 cells). The suite
(``tests/test_fault_matrix.py``) runs ``SUITE_CELLS`` on the demo clip: the 11 single
(modality, kind) cells, drop on each pair of modalities and on all three.

``check_cell(rows, cell, window_s, hop_s)`` says what is wrong with a replay's windows
under a cell (an empty list: the cell passes):

1. every window lying wholly inside the fault shows, for each faulted modality, a state and
   reason the kind must give (``EXPECT``: e.g. a delay makes the sensor DEGRADED "lagging",
   its media arriving late against their own timestamps, which is not the server's lag),
   and a DROPPED modality has no estimate and is not among the modalities the fusion used;
2. every window starting at least one hop after the fault's end has recovered: each
   faulted modality is OK, or shows what the same window shows in a replay of the clip
   without faults (a pause: audio "silence", text "no speech"; a recogniser unsure of a real
   voice) and nothing else. After an audio fault the text, which hears the audio, must be
   back too where a recogniser ran: the same, or DEGRADED by the recogniser's own judgement
   of its words (``TEXT_AFTER_AUDIO``: the words it decoded during the fault are its prompt);
3. windows never stop (a window every hop, from the first to the clip's end), no NaN
   reaches a result (fused, smoothed, per modality, and the JSON row), and the fused
   result never uses a DROPPED modality.

The command runs the full matrix on the demo clip (``streaming.democlip``) and on a real
clip of ``<data>/real``, each cell in a replay of its own with the recogniser, and writes
``OUT.md`` (cell x clip: pass / fail, the states seen, the first failures; the machine,
the date) and ``OUT.json``. The real clips are 1.9 to 5.7 s long, shorter than a fault with
a window inside it and a window a hop after it (3 s windows): the real clip is replayed
as one recording of ``--repeat`` copies of itself (the RAVDESS clip, one face and speech,
three times: 12 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.types import MODALITIES, Modality
from streaming.bench import machine
from streaming.faults import ALLOWED, DEFAULT_PARAMS, FaultKind
from streaming.types import Health, WindowResult
from streaming.windowing import Windower

VISION, AUDIO, TEXT = Modality.VISION, Modality.AUDIO, Modality.TEXT
#: the matrix's order of modalities and kinds (rows of the table)
ORDER = (VISION, AUDIO, TEXT)
KINDS = (FaultKind.DROP, FaultKind.FREEZE, FaultKind.BLACKOUT, FaultKind.NOISE, FaultKind.DELAY)
EPS = 1e-6
#: the real clip of the command: one face, speech (RAVDESS actor 01, 4 s)
REAL_CLIP = "ravdess_01-01-07-02-02-01-01.mp4"


@dataclass(frozen=True)
class Expect:
    """What a faulted modality must show in a window lying inside the fault: one of
    ``allowed``, each a (state, reason pattern) pair."""

    allowed: tuple[tuple[Health, str], ...]

    def matches(self, state: Health, reason: str) -> bool:
        return any(state == s and re.search(p, reason) for s, p in self.allowed)

    def __str__(self) -> str:
        return " or ".join(f'{s.value} "{p}"' for s, p in self.allowed)


def _one(state: Health, pattern: str) -> Expect:
    return Expect(((state, pattern),))


#: (modality, kind) -> what windows inside the fault show. Noise on the camera may hide the
#: face: DEGRADED (noisy frames, or some without a face) or DROPPED (most without one).
EXPECT: dict[tuple[Modality, FaultKind], Expect] = {
    (VISION, FaultKind.DROP): _one(Health.DROPPED, r"^no data"),
    (VISION, FaultKind.FREEZE): _one(Health.DROPPED, r"^frozen frames$"),
    (VISION, FaultKind.BLACKOUT): _one(Health.DROPPED, r"^black frames$"),
    (VISION, FaultKind.NOISE): Expect(((Health.DEGRADED, r"^(noisy frames|no face)$"), (Health.DROPPED, r"^no face$"))),
    (VISION, FaultKind.DELAY): _one(Health.DEGRADED, r"^lagging "),
    (AUDIO, FaultKind.DROP): _one(Health.DROPPED, r"^no data"),
    (AUDIO, FaultKind.FREEZE): _one(Health.DROPPED, r"^repeating samples$"),
    (AUDIO, FaultKind.BLACKOUT): _one(Health.DROPPED, r"^zeroed samples$"),
    (AUDIO, FaultKind.NOISE): _one(Health.DEGRADED, r"^noisy "),
    (AUDIO, FaultKind.DELAY): _one(Health.DEGRADED, r"^lagging "),
    (TEXT, FaultKind.OUTAGE): _one(Health.DROPPED, r"^recogniser outage$"),
}


#: what the text may show after an audio fault besides OK and its state without the fault:
#: the recogniser hears the audio again and returns words, DEGRADED only by its own judgement
#: of them (its confidence, its hallucination checks), which depends on what it decoded during
#: the fault (those words are its prompt). Never DROPPED: the text is not the faulted sensor.
TEXT_AFTER_AUDIO = re.compile(r"^(low recogniser confidence|\d+ words? suppressed)")


def kind_on(modality: Modality, kind: FaultKind) -> FaultKind | None:
    """The fault ``kind`` is on ``modality``: itself where it applies, the recogniser outage
    for a drop on text, None where it does not apply (freeze, blackout, noise, delay on text)."""
    if kind in ALLOWED[modality]:
        return kind
    if modality == TEXT and kind == FaultKind.DROP:
        return FaultKind.OUTAGE
    return None


@dataclass(frozen=True)
class Cell:
    """Faults applied together over [start, end) s of a clip: ``faults`` holds (modality,
    kind) pairs, each kind one that applies to its modality (``faults.ALLOWED``)."""

    faults: tuple[tuple[Modality, FaultKind], ...]
    start: float
    end: float

    def __post_init__(self) -> None:
        for m, k in self.faults:
            if k not in ALLOWED[m]:
                raise ValueError(f"{m.value} takes no {k.value} fault")
        if not self.end > self.start >= 0:
            raise ValueError(f"a cell needs 0 <= start < end, not {self.start}-{self.end}")

    @property
    def name(self) -> str:
        """e.g. "vision:drop", "vision+audio:noise", "vision+audio+text:drop" (text's drop is
        its outage)."""
        mods = "+".join(m.value for m, _ in self.faults)
        kinds = {k for _, k in self.faults}
        if len(kinds) == 1:
            return f"{mods}:{self.faults[0][1].value}"
        if kinds == {FaultKind.DROP, FaultKind.OUTAGE}:
            return f"{mods}:drop"
        return ",".join(f"{m.value}:{k.value}" for m, k in self.faults)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(m for m, _ in self.faults)

    @property
    def spec(self) -> str:
        """The faults in ``streaming.faults.parse_spec``'s form (kinds at their defaults:
        noise at 0 dB SNR, a delay of 1 s)."""
        return ",".join(f"{m.value}:{k.value}@{self.start:g}-{self.end:g}" for m, k in self.faults)

    def at(self, start: float, end: float) -> Cell:
        """The same faults over [start, end)."""
        return Cell(self.faults, float(start), float(end))


def cell_for(modalities, kind: FaultKind, start: float = 0.0, end: float = 1.0) -> Cell:
    """The cell of ``kind`` on each of ``modalities`` (text's drop: the outage)."""
    faults = []
    for m in sorted(map(Modality, modalities), key=ORDER.index):
        k = kind_on(m, kind)
        if k is None:
            raise ValueError(f"{kind.value} does not apply to {m.value}")
        faults.append((m, k))
    return Cell(tuple(faults), start, end)


def matrix_cells(start: float = 0.0, end: float = 1.0) -> list[Cell]:
    """The full cross product over [start, end): every non-empty set of modalities with every
    kind that applies to each of them (text: the outage, as its drop); single modalities
    first, then pairs, then all three."""
    cells = []
    for n in (1, 2, 3):
        for mods in itertools.combinations(ORDER, n):
            kinds = (FaultKind.OUTAGE,) if mods == (TEXT,) else KINDS
            for kind in kinds:
                if all(kind_on(m, kind) is not None for m in mods):
                    cells.append(cell_for(mods, kind, start, end))
    return cells


#: the suite's cells (their intervals set by the test): the 11 single (modality, kind)
#: cells, drop on each pair of modalities and on all three
SUITE_CELLS: tuple[Cell, ...] = (
    *(cell_for([m], k) for m in ORDER for k in ALLOWED[m]),
    *(cell_for(pair, FaultKind.DROP) for pair in itertools.combinations(ORDER, 2)),
    cell_for(ORDER, FaultKind.DROP),
)


def fault_interval(duration: float, hop_s: float = 1.0) -> tuple[float, float]:
    """The fault interval the command uses on a clip of ``duration`` s: from a fifth of the
    clip to three fifths of it, on the hop grid (a 12 s clip: 2-7 s; 20 s: 4-12 s)."""
    return math.floor(0.2 * duration / hop_s) * hop_s, math.floor(0.6 * duration / hop_s) * hop_s


# ------------------------------------------------------------------ the checker
def reason_kind(reason: str) -> str:
    """A health reason with its numbers replaced by "#" ("no data for 1.2 s" -> "no data for
    # s"): two windows showing the same problem compare equal."""
    return re.sub(r"-?\d+(?:\.\d+)?", "#", reason)


def status(w: WindowResult, m: Modality) -> tuple[Health, str]:
    h = w.health[m]
    return h.state, h.reason


def _finite(x) -> bool:
    return x is not None and bool(np.all(np.isfinite(np.asarray(x, float))))


def _number_problems(w: WindowResult) -> list[str]:
    """NaN or inf anywhere in a window's result, smoothed result, per-modality estimates or
    JSON row; a probability vector that is not one."""
    bad = []
    for name, r in (("result", w.result), ("smoothed", w.smoothed)):
        if r is None:
            continue
        if not _finite(r.score) or not _finite(r.probs):
            bad.append(f"{name} score {r.score!r} / probs {np.asarray(r.probs).tolist()}")
        elif abs(float(np.sum(r.probs)) - 1) > 1e-3:
            bad.append(f"{name} probs sum to {float(np.sum(r.probs)):.4f}")
        for m, est in r.per_modality.items():
            if not _finite(est.score) or not _finite(est.probs) or not _finite(est.in_domain):
                bad.append(f"{name} {m.value} estimate {est.score!r}")
    row = w.to_json()
    nums = [row[k] for k in ("score", "confidence", "smoothed_score", "smoothed_confidence")]
    nums += list(row["confidences"].values())
    nums += [v for mod in row["modalities"].values() for v in (mod["score"], mod["in_domain"])]
    if any(v is not None and not math.isfinite(v) for v in nums):
        bad.append(f"a number that is not finite in the row: {nums}")
    if row["no_data"] != (row["score"] is None) or row["no_data"] != (row["label"] is None):
        bad.append(f"no_data {row['no_data']} with score {row['score']} and label {row['label']}")
    return bad


def _continuity(rows: list[WindowResult], window_s: float, hop_s: float, duration: float | None) -> list[str]:
    """Windows never stop: one every hop, each ``window_s`` long, from the first grid end to
    the clip's end (a shorter final window may close it)."""
    if not rows:
        return ["no window came out"]
    out = []
    ends = [w.t_end for w in rows]
    grid = rows if len(rows) < 2 or abs(rows[-1].t_end - rows[-2].t_end - hop_s) < EPS else rows[:-1]
    for a, b in zip(grid, grid[1:]):
        if abs(b.t_end - a.t_end - hop_s) > EPS:
            out.append(f"windows stop: {a.t_end:g} s is followed by {b.t_end:g} s (hop {hop_s:g} s)")
    for w in grid:
        if abs(w.t_end - w.t_start - window_s) > EPS:
            out.append(f"the window ending at {w.t_end:g} s is {w.t_end - w.t_start:g} s long, not {window_s:g}")
    if len(grid) < len(rows):  # the stream's final window, over what the grid left
        last = rows[-1]
        if not (0 < last.t_end - grid[-1].t_end < hop_s + EPS and last.t_end - last.t_start <= window_s + EPS):
            out.append(f"a final window {last.t_start:g}-{last.t_end:g} s after the grid's {grid[-1].t_end:g} s")
    if duration is not None and ends[-1] < duration - Windower(window_s, hop_s).min_tail_s - EPS:
        out.append(f"windows end at {ends[-1]:g} s, before the clip's end {duration:g} s")
    return out


def windows_inside(rows: list[WindowResult], cell: Cell) -> list[WindowResult]:
    """The windows lying wholly inside the cell's fault."""
    return [w for w in rows if w.t_start >= cell.start - EPS and w.t_end <= cell.end + EPS]


def windows_after(rows: list[WindowResult], cell: Cell, hop_s: float, until: float = math.inf) -> list[WindowResult]:
    """The windows starting at least a hop after the cell's fault ends, and ending before
    ``until``: those that must have recovered."""
    return [w for w in rows if w.t_start >= cell.end + hop_s - EPS and w.t_end < until - EPS]


def watched(cell: Cell, recogniser: bool) -> list[Modality]:
    """The modalities held to recovery after ``cell``'s fault: the faulted ones, and the text
    after an audio fault where a recogniser ran (it hears the audio)."""
    watch = list(cell.modalities)
    if recogniser and AUDIO in watch and TEXT not in watch:
        watch.append(TEXT)
    return watch


def check_cell(
    rows: list[WindowResult],
    cell: Cell,
    window_s: float = 3.0,
    hop_s: float = 1.0,
    *,
    clean: list[WindowResult] | None = None,
    until: float = math.inf,
    duration: float | None = None,
    recogniser: bool | None = None,
) -> list[str]:
    """What is wrong with a replay's windows ``rows`` (in order) under ``cell``; an empty
    list when the cell passes (the module's docstring gives the three rules).

    ``clean``: the windows of a replay of the same clip without faults; a window after the
    fault may then show what the clean window with the same end shows (without it, only OK
    counts as recovered). ``until``: only windows ending before this are held to recovery
    (another cell's fault starts there in the same replay; a window ending right where it
    starts is judged at that moment, and the recogniser's decode for it falls inside it).
    ``duration``: the clip's length, which the windows must reach. ``recogniser``: whether
    the replay ran one (default: some window's text is not "no recogniser"); with one, the
    text must recover after an audio fault too."""
    fails: list[str] = []
    if recogniser is None:
        recogniser = any(w.health[TEXT].reason != "no recogniser" for w in rows)

    # 1. inside the fault: the kind's state and reason
    inside = windows_inside(rows, cell)
    if not inside:
        fails.append(f"no window lies wholly inside {cell.start:g}-{cell.end:g} s")
    for w in inside:
        for m, k in cell.faults:
            state, reason = status(w, m)
            if not EXPECT[m, k].matches(state, reason):
                fails.append(f"{w.t_start:g}-{w.t_end:g} s: {m.value} {state.value} {reason!r}, expected {EXPECT[m, k]}")
            if k == FaultKind.DELAY and w.lag.get("transport", 0.0) >= DEFAULT_PARAMS[k]["delay"]:
                # the sensor's lateness is its own fault, never booked as the transport's lag
                fails.append(f"{w.t_start:g}-{w.t_end:g} s: the {m.value} delay shows as transport lag {w.lag}")

    # 2. a hop after the end: recovered
    watch = watched(cell, recogniser)
    reference = {round(w.t_end, 6): w for w in clean or ()}
    after = windows_after(rows, cell, hop_s, until)
    if not after:
        fails.append(f"no window starts a hop after {cell.end:g} s")
    for w in after:
        for m in watch:
            state, reason = status(w, m)
            ref = reference.get(round(w.t_end, 6))
            if state == Health.OK:
                continue
            if ref is not None and status(ref, m)[0] == state and reason_kind(status(ref, m)[1]) == reason_kind(reason):
                continue  # what the sensor shows there without the fault
            if m not in cell.modalities and state == Health.DEGRADED and TEXT_AFTER_AUDIO.match(reason):
                continue  # the text after an audio fault: back, its words judged by the recogniser
            was = "" if ref is None else f" (without the fault: {status(ref, m)[0].value} {status(ref, m)[1]!r})"
            fails.append(f"{w.t_start:g}-{w.t_end:g} s: {m.value} {state.value} {reason!r}, not recovered{was}")

    # 3. every window: continuity, no NaN, DROPPED modalities neither estimated nor used
    fails += _continuity(rows, window_s, hop_s, duration)
    for w in rows:
        fails += [f"{w.t_start:g}-{w.t_end:g} s: {p}" for p in _number_problems(w)]
        for m in MODALITIES:
            if w.health[m].state != Health.DROPPED:
                continue
            if m in w.result.used:
                fails.append(f"{w.t_start:g}-{w.t_end:g} s: the fused result used {m.value}, which is DROPPED")
            if m in w.result.per_modality:
                fails.append(f"{w.t_start:g}-{w.t_end:g} s: {m.value} is DROPPED yet has an estimate")
    return fails


def states_seen(
    rows: list[WindowResult], cell: Cell, hop_s: float = 1.0, until: float = math.inf, recogniser: bool = True
) -> dict:
    """What the modalities showed: {"inside": {modality: {"STATE reason": windows}}, "after":
    {...}}: the faulted ones over the windows inside the fault, those held to recovery
    (``watched``) over the windows a hop after its end."""
    inside, after = windows_inside(rows, cell), windows_after(rows, cell, hop_s, until)

    def count(ws, mods):
        out = {}
        for m in mods:
            c = Counter(f"{status(w, m)[0].value} {reason_kind(status(w, m)[1])}".strip() for w in ws)
            out[m.value] = dict(c.most_common())
        return out

    return {"inside": count(inside, cell.modalities), "after": count(after, watched(cell, recogniser))}


# ------------------------------------------------------------------ the runner
def replay_cells(
    path: str | Path,
    cells: list[Cell],
    model,
    asr=None,
    window_s: float = 3.0,
    hop_s: float = 1.0,
    seed: int = 0,
) -> list[WindowResult]:
    """Replays the recording at ``path`` through the real pipeline
    (``streaming.simulate.build_pipeline`` and ``replay``: the shipped face analyser, the
    model ``model``, the recogniser ``asr`` in sync mode, or none when None) with every
    cell's faults scheduled; returns the windows. The cells must not overlap."""
    from streaming.simulate import build_pipeline, replay

    spec = ",".join(c.spec for c in cells)
    if asr is not None:
        asr.reset()
    pipe = build_pipeline(spec, window_s, hop_s, asr_mode="sync" if asr is not None else "off", seed=seed, model=model, asr=asr)
    try:
        return replay(pipe, path, progress=False)
    finally:
        pipe.close()


def run_cells(
    path: str | Path,
    cells: list[Cell],
    model,
    asr=None,
    *,
    clean: list[WindowResult] | None = None,
    duration: float | None = None,
    window_s: float = 3.0,
    hop_s: float = 1.0,
) -> tuple[list[WindowResult], dict[str, list[str]]]:
    """One replay with the cells' faults, each cell checked on it: (windows, {cell name:
    failures}). A cell's fault must start after a window that begins a hop after the
    previous fault's end has ended (its recovery is judged there)."""
    cells = sorted(cells, key=lambda c: c.start)
    for a, b in zip(cells, cells[1:]):
        if b.start <= a.end + hop_s + window_s + EPS:
            raise ValueError(f"{b.name}@{b.start:g} leaves {a.name} no window to recover in before it")
    rows = replay_cells(path, cells, model, asr, window_s, hop_s)
    out = {}
    for i, c in enumerate(cells):
        until = cells[i + 1].start if i + 1 < len(cells) else math.inf
        out[c.name] = check_cell(
            rows, c, window_s, hop_s, clean=clean, until=until, duration=duration, recogniser=asr is not None
        )
    return rows, out


def build_real_clip(out: str | Path, name: str = REAL_CLIP, repeat: int = 3, data_root=None) -> dict:
    """The real clip ``<data>/real/<name>`` played ``repeat`` times in a row, written to
    ``out`` (mp4: its own frames at its own rate, its audio at 16 kHz): {"path", "duration",
    "source"}."""
    from models.paths import data_root as default_root
    from streaming.sources.files import FileReplay, read_media, write_media

    src = Path(data_root or default_root()) / "real" / name
    rate = FileReplay(src, realtime=False).native_fps
    frames, audio = read_media(src)
    if not frames or audio is None:
        raise ValueError(f"{src} needs a face and a voice: it has {len(frames)} frames and {'no' if audio is None else ''} audio")
    write_media(out, [f.image for f in frames] * repeat, rate, np.tile(audio, repeat))
    return {"path": str(out), "duration": FileReplay(out, realtime=False).duration, "source": name}


def run_matrix(clips: dict[str, dict], model, asr, cells=None, progress: bool = True) -> dict:
    """Every cell of the full matrix on every clip ({name: {"path", "duration", ...}}), one
    replay each with the recogniser, after a replay without faults (the clean reference).
    Returns the report: {"machine", "date", "clips": {name: {..., "interval", "clean"}},
    "cells": [{"cell", "spec", clip: {"pass", "failures", "states", "seconds"}}]}."""
    from tqdm import tqdm

    template = matrix_cells() if cells is None else cells
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "clips": {}, "cells": []}
    bar = tqdm(total=len(clips) * (len(template) + 1), desc="fault matrix", unit="replay", disable=not progress)
    by_cell = {c.name: {"cell": c.name, "faults": [f"{m.value}:{k.value}" for m, k in c.faults]} for c in template}
    for clip_name, clip in clips.items():
        start, end = fault_interval(clip["duration"])
        bar.set_postfix_str(f"{clip_name}: clean")
        clean = replay_cells(clip["path"], [], model, asr)
        bar.update()
        report["clips"][clip_name] = {
            **{k: v for k, v in clip.items() if k != "path"},
            "file": Path(clip["path"]).name,
            "interval": [start, end],
            "clean": {
                m.value: dict(Counter(f"{w.health[m].state.value} {reason_kind(w.health[m].reason)}".strip() for w in clean))
                for m in ORDER
            },
        }
        for template_cell in template:
            cell = template_cell.at(start, end)
            bar.set_postfix_str(f"{clip_name}: {cell.name}")
            t0 = time.perf_counter()
            rows = replay_cells(clip["path"], [cell], model, asr)
            fails = check_cell(rows, cell, clean=clean, duration=clip["duration"], recogniser=True)
            by_cell[cell.name]["spec"] = by_cell[cell.name].get("spec", {}) | {clip_name: cell.spec}
            by_cell[cell.name][clip_name] = {
                "pass": not fails,
                "failures": fails,
                "states": states_seen(rows, cell),
                "windows": len(rows),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            bar.update()
    bar.close()
    report["cells"] = list(by_cell.values())
    return report


def _states_text(states: dict) -> str:
    """ "vision DROPPED no data for # s x5; ..." for the table."""
    parts = []
    for m, counts in states.items():
        parts.append(f"{m}: " + ", ".join(f"{s} ({n})" for s, n in counts.items()))
    return "; ".join(parts)


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    """``OUT.md`` (the table) and ``OUT.json`` (everything) from ``run_matrix``'s report."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = out.with_suffix(".md"), out.with_suffix(".json")
    js.write_text(json.dumps(report, indent=1) + "\n")
    clips = list(report["clips"])
    n = sum(1 for c in report["cells"] for k in clips if k in c)
    passed = sum(1 for c in report["cells"] for k in clips if c.get(k, {}).get("pass"))
    lines = [
        "# Fault matrix",
        "",
        f"Written by `python -m streaming.fault_matrix` on {report['machine']}, {report['date']}: "
        f"**{passed} of {n} cells pass**.",
        "",
        "Each cell is a set of faults applied together over one interval of a clip, replayed through the real "
        "pipeline (the shipped model, face analyser and faster-whisper recogniser, 3 s windows every 1 s). A cell "
        "passes when every window lying wholly inside the fault shows each faulted modality's expected state and "
        "reason; every window starting at least one hop after the fault's end has recovered (each faulted modality "
        "is OK or shows what the same window shows in a replay without faults; after an audio fault the text, which "
        "hears the audio, is the same or DEGRADED by the recogniser's own judgement of its words, never DROPPED); "
        "windows never stop; no NaN reaches a result; and the fused result uses no DROPPED modality. "
        "Text's drop is the recogniser outage. Noise is at 0 dB SNR, a delay is 1 s. States are counted in windows; "
        "numbers in reasons read #.",
        "",
        "Clips:",
        "",
    ]
    for name, c in report["clips"].items():
        a, b = c["interval"]
        clean = "; ".join(f"{m} " + ", ".join(f"{s} ({k})" for s, k in st.items()) for m, st in c["clean"].items())
        what = (
            f"`{c['source']}` from `../shared/data/real`, played {c['repeat']} times in a row"
            if "source" in c
            else "the demo clip (`streaming.democlip`)"
        )
        lines.append(f"- **{name}**: {what}, {c['duration']:.1f} s; faults at {a:g}-{b:g} s. Without faults: {clean}.")
    lines += ["", "Expected inside the fault:", ""]
    for (m, k), e in EXPECT.items():
        lines.append(f"- {m.value}:{k.value}: {e}")
    lines += [
        "",
        "| cell | " + " | ".join(clips) + " | states inside the fault | states a hop after it | failures |",
        "| --- | " + " | ".join("---" for _ in clips) + " | --- | --- | --- |",
    ]
    for c in report["cells"]:
        verdicts = [("pass" if c[k]["pass"] else "**FAIL**") if k in c else "" for k in clips]
        states = "<br>".join(f"{k}: {_states_text(c[k]['states']['inside'])}" for k in clips if k in c)
        after = "<br>".join(f"{k}: {_states_text(c[k]['states']['after'])}" for k in clips if k in c)
        fails = "<br>".join(
            f"{k}: "
            + "; ".join(c[k]["failures"][:3])
            + (f" (+{len(c[k]['failures']) - 3} more)" if len(c[k]["failures"]) > 3 else "")
            for k in clips
            if k in c and c[k]["failures"]
        )
        lines.append(f"| {c['cell']} | " + " | ".join(verdicts) + f" | {states} | {after} | {fails or 'none'} |")
    md.write_text("\n".join(lines) + "\n")
    return md, js


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="demo,real", help="demo, real or both (default demo,real)")
    ap.add_argument("--out", default="docs/fault-matrix", help="writes OUT.md and OUT.json")
    ap.add_argument("--real-clip", default=REAL_CLIP, help=f"a file of <data>/real (default {REAL_CLIP})")
    ap.add_argument("--repeat", type=int, default=3, help="times the real clip plays in a row (default 3)")
    ap.add_argument("--cells", default="", help="only the cells whose name contains one of these (comma-separated)")
    ap.add_argument("--data", help="data root (default ../shared/data)")
    args = ap.parse_args(argv)
    names = [c.strip() for c in args.clips.split(",") if c.strip()]
    if not names or set(names) - {"demo", "real"}:
        ap.error("--clips takes demo, real or both")
    cells = matrix_cells()
    if args.cells:
        want = [w.strip() for w in args.cells.split(",") if w.strip()]
        cells = [c for c in cells if any(w in c.name for w in want)]
        if not cells:
            ap.error(f"no cell matches {args.cells!r}")

    from models.runtime import SentimentModel
    from streaming.asr import StreamingASR
    from streaming.democlip import build_clip

    with tempfile.TemporaryDirectory() as tmp:
        clips = {}
        if "demo" in names:
            info = build_clip(Path(tmp) / "demo.mp4", data_root=args.data)
            clips["demo"] = {"path": info["path"], "duration": info["duration"]}
        if "real" in names:
            info = build_real_clip(Path(tmp) / "real.mp4", args.real_clip, args.repeat, args.data)
            clips["real"] = {**info, "repeat": args.repeat}
        model, asr = SentimentModel.load(), StreamingASR()
        report = run_matrix(clips, model, asr, cells)
    md, js = write_report(report, args.out)
    failed = [(c["cell"], k) for c in report["cells"] for k in clips if not c[k]["pass"]]
    print(f"{len(report['cells']) * len(clips) - len(failed)} of {len(report['cells']) * len(clips)} cells pass -> {md}, {js}")
    for cell, clip in failed:
        print(f"  FAIL {cell} on {clip}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
