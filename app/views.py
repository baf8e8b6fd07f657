"""How a session is shown: the headline score, the sensors' health badges, the transcript
panel, the status line, and ``Views``, the output components that a session fills."""

from __future__ import annotations

import weakref

from streaming.types import HealthStatus, WindowResult

STATE_STYLE = {"OK": "#1b7f3b", "DEGRADED": "#b86e00", "DROPPED": "#b3261e"}
TRANSCRIPT_SPAN_S = 60.0  # the transcript panel shows the words of the last minute
#: what each session was last drawn from (``Views.values``), so an unchanged one is not drawn again
_DRAWN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
TIMELINE_WINDOWS = 120  # the timeline reads the latest windows ...
TIMELINE_HORIZON_S = 90.0  # ... and shows this many seconds of them


def _esc(text: str) -> str:
    import html

    return html.escape(str(text), quote=True)


def health_html(w: WindowResult | None, errors: dict[str, str] | None = None) -> str:
    """Per-modality badges: state, reason, the modality's own estimate."""
    from models.types import Modality

    cards = []
    for m in ("vision", "audio", "text"):
        mod = Modality(m)
        if w is None:
            state, reason, score = "waiting", errors.get(m, "") if errors else "", None
        else:
            h = w.health.get(mod, HealthStatus())
            est = w.result.per_modality.get(mod)
            state, reason, score = h.state.value, h.reason, None if est is None else est.score
        colour = STATE_STYLE.get(state, "#666")
        est = "" if score is None else f"<div style='font-size:0.85em'>own estimate {score:+.2f}</div>"
        cards.append(
            f"<div class='badge' data-modality='{m}' data-state='{state}' style='flex:1;border:2px solid {colour};"
            f"border-radius:8px;padding:6px 8px;margin:2px'><b>{m}</b> "
            f"<span style='color:#fff;background:{colour};border-radius:4px;padding:0 6px'>{state}</span>"
            f"<div style='font-size:0.8em;color:#555;min-height:1.2em'>{_esc(reason)}</div>{est}</div>"
        )
    return "<div style='display:flex;gap:4px'>" + "".join(cards) + "</div>"


def score_html(w: WindowResult | None) -> str:
    """The headline: the smoothed estimate with the window's own beside it, or "no data"."""
    if w is None:
        return (
            "<div class='headline' data-state='waiting' style='font-size:1.1em;color:#666'>waiting for the first window...</div>"
        )
    if w.no_data:
        from models.types import MODALITIES

        health = [(m.value, w.health.get(m, HealthStatus())) for m in MODALITIES]
        why = "; ".join(f"{m} {h.reason or h.state.value}" for m, h in health)
        return (
            "<div class='headline' data-state='no-data' style='font-size:1.6em;color:#666'><b>no data</b> "
            f"<span style='font-size:0.6em'>no modality is usable in window {w.t_start:.0f}-{w.t_end:.0f} s "
            f"({_esc(why)}), so there is no estimate</span></div>"
        )
    # the headline is the smoothed estimate (streaming.smoothing); the window's own beside it
    own, sm = w.result, w.current
    s, label, conf = sm.score, sm.label, sm.confidence
    pos = (s + 3) / 6 * 100
    return (
        f"<div class='headline' data-state='estimate' style='font-size:1.6em'><b>{label}</b> &nbsp; score {s:+.2f} "
        f"<span style='font-size:0.6em;color:#555'>(-3 very negative .. +3 very positive), confidence "
        f"{conf:.2f}, smoothed over the latest windows; the latest alone: {own.label} "
        f"{own.score:+.2f} ({own.confidence:.2f}), window {w.t_start:.0f}-{w.t_end:.0f} s</span></div>"
        f"<div style='position:relative;height:10px;background:linear-gradient(90deg,#d62728,#9e9e9e,#1f77b4);"
        f"border-radius:5px;margin:4px 0'><div style='position:absolute;left:calc({pos:.1f}% - 3px);top:-3px;"
        f"width:6px;height:16px;background:#000;border-radius:2px'></div></div>"
    )


def _md(text: str) -> str:
    """Text safe inside Markdown (no emphasis, links or HTML from what was recognised)."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>])", r"\\\1", text)


def transcript_md(committed: list, partial: list, span_s: float = TRANSCRIPT_SPAN_S) -> str:
    """The transcript panel: the committed words of the last ``span_s`` seconds, then the
    partial tail (may still change) in italics; words not trusted as said are struck out,
    with the reasons listed below."""
    if not committed and not partial:
        return "*(no speech recognised yet)*"
    out, reasons = [], {}
    for w in committed:
        if w.suspect:
            out.append(f"~~{_md(w.text)}~~")
            reasons[w.suspect] = reasons.get(w.suspect, 0) + 1
        else:
            out.append(_md(w.text))
    body = " ".join(out)
    tail = [w for w in partial if not w.suspect]
    if tail:
        body += f" _{' '.join(_md(w.text) for w in tail)}_ *(partial, may still change)*"
    head = f"**Transcript, last {span_s:.0f} s**  \n"
    if reasons:
        body += (
            "  \n<small>struck out, not trusted as said and not read by the model: "
            + "; ".join(f"{_md(r)} ({n} word{'s' * (n > 1)})" for r, n in reasons.items())
            + "</small>"
        )
    return head + body


class Views:
    """The output components of a session, and how a session fills them; ``prefix`` names
    their elem_ids (``{prefix}-score``, ``-health``, ``-transcript``, ``-status``)."""

    def __init__(self, gr, prefix: str = "live"):
        self.score = gr.HTML(score_html(None), elem_id=f"{prefix}-score")
        self.label = gr.Label(num_top_classes=3, label="Sentiment confidences")
        self.health = gr.HTML(health_html(None), elem_id=f"{prefix}-health")
        self.transcript = gr.Markdown("*(no speech recognised yet)*", label="Transcript", elem_id=f"{prefix}-transcript")
        # an SVG the browser draws (streaming.timeline): the server only writes it (4 ms for 120
        # windows), where rendering a matplotlib figure took about 200 ms of its CPU
        self.plot = gr.HTML("", label="Timeline", elem_id=f"{prefix}-timeline")
        self.status = gr.Markdown("", elem_id=f"{prefix}-status")

    @property
    def components(self):
        return [self.score, self.label, self.health, self.transcript, self.plot, self.status]

    @staticmethod
    def values(session, gr, force: bool = False):
        """Values for ``components``, always plain values, never ``gr.skip()`` or an update:
        Gradio 6.31 makes a new component for every update an event returns and keeps it in
        the browser session's config until the session ends (a live session grew by about 5
        components a second, docs/reliability.md). What was drawn is kept per session, so an
        unchanged session costs no new drawing (``force``: draw anew)."""
        if session is None:
            return [score_html(None), None, health_html(None), transcript_md([], []), "", ""]
        w = session.latest()
        key = (session.generation, w and (w.t_end, id(w)), tuple(sorted(session.errors.items())), str(session.limited))
        words = session.transcript_view()
        drawn = _DRAWN.get(session)
        if not force and drawn is not None and drawn[0] == key:
            # no new window: the transcript may have new words (the recogniser runs apart
            # from the windows, so words show as they are decoded)
            values = drawn[1]
            if drawn[2] != words:
                values = values[:3] + [transcript_md(*words)] + values[4:]
                _DRAWN[session] = (key, values, words)
            return list(values)
        plot = ""
        if w is not None:
            from streaming.timeline import timeline_data, timeline_svg

            data = timeline_data(session.windows(TIMELINE_WINDOWS), session.faults.timeline(), horizon=TIMELINE_HORIZON_S)
            plot = timeline_svg(data)
        label = None if w is None or w.no_data else w.result.confidences()
        values = [
            score_html(w),
            label,
            health_html(w, session.errors),
            transcript_md(*words),
            plot,
            status_md(session),
        ]
        _DRAWN[session] = (key, values, words)
        return list(values)

    @property
    def quick(self):
        """The components the microphone's events fill (every 0.5 s): all but the timeline,
        which goes out with the 1 s tick only (the largest value, about 26 kB)."""
        return [c for c in self.components if c is not self.plot]

    @staticmethod
    def quick_values(session, gr):
        """Values for ``quick``."""
        values = Views.values(session, gr)
        return values[:4] + values[5:]


def status_md(session) -> str:
    """Latency, the transport's, the server's and the recogniser's lag (delivery and
    processing behind the media, not a sensor fault), frames skipped to keep up, and input
    errors."""
    lat = session.latency()
    w = session.latest()
    parts = []
    if lat:
        parts.append(
            f"window latency: last {lat['last']:.0f} ms, p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms "
            f"over {min(len(session.results), 300)} windows"
        )
    if w is not None:
        lag = w.lag
        server = lag.get("server")
        asr = lag.get("recogniser")
        transport = lag.get("transport")
        bits = []
        if transport is not None and transport >= 0.05:  # shown to 0.1 s: on time is not news
            bits.append(f"input arriving {transport:.1f} s late")
        if server is not None:
            bits.append(f"server {server:.1f} s behind")
        if asr is not None:
            bits.append(f"recogniser {asr:.1f} s behind")
        if session.frames_skipped:
            bits.append(f"{session.frames_skipped} camera frames skipped to keep up")

        if bits:
            parts.append("lag (delivery and processing, not the sensors): " + ", ".join(bits))
    limited = getattr(session, "limited", None) or {}
    if limited.get("frames") or limited.get("audio_s"):
        parts.append(
            f"**over the input limits:** {limited['frames']} camera frames and {limited['audio_s']:g} s of audio "
            "dropped (more than the page sends)"
        )
    if session.errors:
        parts.append("**input problems:** " + "; ".join(f"{k}: {_md(v)}" for k, v in session.errors.items()))
    return "  \n".join(parts)
