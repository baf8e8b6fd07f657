"""The edge where windows become text: JSON Lines (``WindowResult.to_json``, one window a
line) and CSV (the same fields flattened, one row a window). The session's exports and the
simulator's output are written here; everything before this edge passes ``WindowResult``
objects.

    jsonl(results) -> str       csv_text(results) -> str
    write(results, folder, stem) -> (folder/stem.csv, folder/stem.jsonl)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from models.types import MODALITIES, SENTIMENT_CLASSES
from streaming.types import HealthStatus, WindowResult

LAG_STAGES = ("transport", "recogniser", "server")  # WindowResult.lag's keys, in CSV order

CSV_COLUMNS = (
    ["t_start", "t_end", "no_data", "score", "label", "confidence"]
    + [f"p_{c}" for c in SENTIMENT_CLASSES]
    + ["smoothed_score", "smoothed_label"]
    + [f"{m.value}_{k}" for m in MODALITIES for k in ("state", "reason", "score")]
    + ["transcript", "partial", "suppressed"]
    + [f"{s}_lag_s" for s in LAG_STAGES]
    + ["latency_ms"]
)


def jsonl(results: Sequence[WindowResult]) -> str:
    """One JSON object a line (``WindowResult.to_json``), oldest first."""
    return "".join(json.dumps(w.to_json()) + "\n" for w in results)


def csv_row(w: WindowResult) -> list:
    """The window's cells in ``CSV_COLUMNS`` order: numbers rounded as in the JSON Lines,
    an empty cell where the JSON has null (no estimate in a no-data window, a lag stage not
    measured)."""
    empty = w.no_data

    def num(x: float, digits: int = 4):
        return "" if empty else round(float(x), digits)

    r, sm = w.result, w.current
    row = [round(w.t_start, 3), round(w.t_end, 3), int(empty), num(r.score), "" if empty else r.label, num(r.confidence)]
    row += [num(p) for p in r.confidences().values()]
    row += [num(sm.score), "" if empty else sm.label]
    for m in MODALITIES:
        h = w.health.get(m, HealthStatus())
        est = r.per_modality.get(m)
        row += [h.state.value, h.reason, "" if est is None else round(est.score, 4)]
    row += [w.transcript, w.partial, w.suppressed]
    row += ["" if w.lag.get(s) is None else w.lag[s] for s in LAG_STAGES]
    row += [round(w.latency_ms, 2)]
    return row


def csv_text(results: Sequence[WindowResult]) -> str:
    """A header of ``CSV_COLUMNS`` and one row per window."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_COLUMNS)
    out.writerows(csv_row(w) for w in results)
    return buf.getvalue()


def write(results: Sequence[WindowResult], folder: str | Path, stem: str) -> tuple[Path, Path]:
    """Writes ``stem.csv`` and ``stem.jsonl`` in ``folder`` (made if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c, j = folder / f"{stem}.csv", folder / f"{stem}.jsonl"
    c.write_text(csv_text(results))
    j.write_text(jsonl(results))
    return c, j
