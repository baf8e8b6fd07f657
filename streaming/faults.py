"""Fault injection: what a failing sensor does to the items a source emits.

Faults sit between the sources and the rest of the pipeline (sources -> faults -> health),
so the health monitor and the model see exactly what a broken sensor would deliver.

Kinds (``FaultKind``), by modality:

    drop       vision, audio   no data at all
    freeze     vision, audio   the last item before the fault repeats (new timestamps)
    blackout   vision, audio   black frames / zeroed samples
    noise      vision, audio   additive Gaussian noise at ``snr`` dB (default 0)
    delay      vision, audio   items arrive ``delay`` s late (+- ``jitter`` s), in order
    outage     text            the speech recogniser fails (no transcript)

A fault is active on ``[start, end)`` seconds of pipeline time. ``parse_spec`` reads the
command-line form::

    vision:drop@2-5,audio:noise:snr=0@4-8,text:outage@6-9,vision:delay:delay=1.5@10-

(``@a-`` means from a to the end; no ``@`` means always). The UI switches faults on and off
live with ``FaultInjector.set_live``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from models.types import Modality
from streaming.types import AudioChunk, VideoFrame


class FaultKind(str, Enum):
    DROP = "drop"
    FREEZE = "freeze"
    BLACKOUT = "blackout"
    NOISE = "noise"
    DELAY = "delay"
    OUTAGE = "outage"


#: Which kinds apply to which modality.
ALLOWED: dict[Modality, tuple[FaultKind, ...]] = {
    Modality.VISION: (FaultKind.DROP, FaultKind.FREEZE, FaultKind.BLACKOUT, FaultKind.NOISE, FaultKind.DELAY),
    Modality.AUDIO: (FaultKind.DROP, FaultKind.FREEZE, FaultKind.BLACKOUT, FaultKind.NOISE, FaultKind.DELAY),
    Modality.TEXT: (FaultKind.OUTAGE,),
}
#: Parameters each kind takes, with defaults.
DEFAULT_PARAMS: dict[FaultKind, dict[str, float]] = {
    FaultKind.NOISE: {"snr": 0.0},
    FaultKind.DELAY: {"delay": 1.0, "jitter": 0.0},
}


@dataclass(frozen=True)
class Fault:
    modality: Modality
    kind: FaultKind
    start: float = 0.0
    end: float = math.inf
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ALLOWED[self.modality]:
            ok = ", ".join(k.value for k in ALLOWED[self.modality])
            raise ValueError(f"{self.modality.value} takes faults {ok}, not {self.kind.value}")
        if not self.end > self.start:
            raise ValueError(f"fault interval must have end > start, got {self.start}-{self.end}")
        allowed = DEFAULT_PARAMS.get(self.kind, {})
        for k, _ in self.params:
            if k not in allowed:
                raise ValueError(f"{self.kind.value} takes no parameter {k!r} (takes: {', '.join(allowed) or 'none'})")

    def param(self, name: str) -> float:
        return dict(self.params).get(name, DEFAULT_PARAMS.get(self.kind, {}).get(name, 0.0))

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def __str__(self) -> str:
        ps = "".join(f":{k}={v:g}" for k, v in self.params)
        end = "" if math.isinf(self.end) else f"{self.end:g}"
        return f"{self.modality.value}:{self.kind.value}{ps}@{self.start:g}-{end}"


_ITEM = re.compile(r"^\s*(?P<mod>[a-z]+)\s*:\s*(?P<body>[^@]+?)\s*(?:@\s*(?P<a>[\d.]+)\s*-\s*(?P<b>[\d.]*)\s*)?$")


def parse_spec(spec: str) -> list[Fault]:
    """``"vision:drop@2-5,audio:noise:snr=0@4-8"`` -> faults. Raises ValueError with the
    offending item on bad syntax, an unknown modality, kind or parameter."""
    faults = []
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        m = _ITEM.match(item.lower())
        if not m:
            raise ValueError(f"bad fault {item!r}: expected modality:kind[:param=value]@start-end")
        try:
            modality = Modality(m["mod"])
        except ValueError:
            raise ValueError(f"bad fault {item!r}: modality must be vision, audio or text") from None
        kind_name, *param_parts = [p.strip() for p in m["body"].split(":")]
        try:
            kind = FaultKind(kind_name)
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"bad fault {item!r}: kind must be one of {kinds}") from None
        params = []
        for p in param_parts:
            k, eq, v = p.partition("=")
            try:
                params.append((k.strip(), float(v)))
            except ValueError:
                raise ValueError(f"bad fault {item!r}: parameter {p!r} must be name=number") from None
            if not eq:
                raise ValueError(f"bad fault {item!r}: parameter {p!r} must be name=number")
        start = float(m["a"]) if m["a"] else 0.0
        end = float(m["b"]) if m["b"] else math.inf
        try:
            faults.append(Fault(modality, kind, start, end, tuple(params)))
        except ValueError as e:
            raise ValueError(f"bad fault {item!r}: {e}") from None
    return faults


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, power: float) -> np.ndarray:
    """x (as float32) plus white Gaussian noise of power ``power / 10^(snr/10)``."""
    sigma = math.sqrt(power / 10 ** (snr_db / 10))
    return x.astype(np.float32) + rng.normal(0.0, sigma, x.shape).astype(np.float32)


@dataclass
class _Held:
    release: float
    item: object


@dataclass
class FaultInjector:
    """Applies scheduled faults (from ``parse_spec``) and live ones (UI toggles) to items.

    ``video(frame)`` and ``audio(chunk)`` return the items to pass on now (none while
    dropped; delayed items come out later, from a later call or ``release(now)``).
    ``text_outage(t)`` tells the pipeline whether the recogniser is out at time t.
    """

    faults: list[Fault] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._live: dict[tuple[Modality, FaultKind], Fault] = {}
        self._live_log: list[Fault] = []  # live faults switched off again, for the timeline
        self._last_good: dict[Modality, object] = {}
        self._held: dict[Modality, deque[_Held]] = {Modality.VISION: deque(), Modality.AUDIO: deque()}
        self._last_release: dict[Modality, float] = {Modality.VISION: -math.inf, Modality.AUDIO: -math.inf}
        self._speech_power = 0.01  # running mean power of audible chunks (noise is set against it)

    # ----------------------------------------------------------- control
    def set_live(
        self, modality: Modality | str, kind: FaultKind | str, on: bool, t: float | None = None, **params: float
    ) -> None:
        """Switch a fault on (from now until switched off) or off. ``t``: the stream time of
        the switch, kept for the timeline (``timeline()``); switching on a fault that is
        already on only updates its parameters."""
        modality, kind = Modality(modality), FaultKind(kind)
        key = (modality, kind)
        old = self._live.get(key)
        if on:
            start = old.start if old is not None else (0.0 if t is None else max(0.0, float(t)))
            self._live[key] = Fault(modality, kind, start, params=tuple(sorted(params.items())))
        elif old is not None:
            del self._live[key]
            if t is not None and t > old.start:
                self._live_log.append(Fault(modality, kind, old.start, float(t), old.params))
                del self._live_log[:-100]

    def timeline(self) -> list[Fault]:
        """Every fault interval to show: scheduled ones, live ones already switched off and
        live ones still on (open-ended)."""
        return [*self.faults, *self._live_log, *self._live.values()]

    def active(self, modality: Modality, t: float) -> list[Fault]:
        """Faults on ``modality`` at time t, scheduled and live."""
        out = [f for f in self.faults if f.modality == modality and f.active(t)]
        return out + [f for (m, _), f in self._live.items() if m == modality]

    def _kind(self, modality: Modality, t: float) -> dict[FaultKind, Fault]:
        return {f.kind: f for f in self.active(modality, t)}

    def text_outage(self, t: float) -> bool:
        return FaultKind.OUTAGE in self._kind(Modality.TEXT, t)

    # ----------------------------------------------------------- items
    def video(self, frame: VideoFrame) -> list[VideoFrame]:
        return self._apply(Modality.VISION, frame)

    def audio(self, chunk: AudioChunk) -> list[AudioChunk]:
        return self._apply(Modality.AUDIO, chunk)

    def release(self, modality: Modality, now: float) -> list:
        """Delayed items of ``modality`` whose arrival time has come."""
        q, out = self._held[modality], []
        while q and q[0].release <= now:
            out.append(q.popleft().item)
        return out

    def _apply(self, modality: Modality, item):
        t = item.t
        faults = self._kind(modality, t)
        if FaultKind.DROP in faults:
            return self.release(modality, t)
        if FaultKind.FREEZE in faults and modality in self._last_good:
            item = self._frozen(modality, item)
        else:
            self._last_good[modality] = item
            if isinstance(item, AudioChunk) and len(item.samples):
                p = float(np.mean(item.samples.astype(np.float64) ** 2))
                if p > 1e-5:  # louder than room silence: track the speech level
                    self._speech_power = 0.9 * self._speech_power + 0.1 * p
        if FaultKind.BLACKOUT in faults:
            item = self._black(item)
        if FaultKind.NOISE in faults:
            item = self._noisy(item, faults[FaultKind.NOISE].param("snr"))
        if FaultKind.DELAY in faults or self._held[modality]:
            # delayed, or behind a backlog that is still draining after a delay ended:
            # arrivals stay in order (a sensor link delays, it does not reorder)
            d = 0.0
            if FaultKind.DELAY in faults:
                f = faults[FaultKind.DELAY]
                d = f.param("delay") + (abs(self._rng.normal(0.0, f.param("jitter"))) if f.param("jitter") else 0.0)
            rel = max(t + d, self._last_release[modality])
            self._last_release[modality] = rel
            self._held[modality].append(_Held(rel, item))
            return self.release(modality, t)
        return [item]

    def _frozen(self, modality: Modality, item):
        last = self._last_good[modality]
        if isinstance(item, VideoFrame):
            return VideoFrame(item.t, last.image)
        # audio: the last chunk's samples again, fitted to this chunk's length
        reps = int(np.ceil(len(item.samples) / max(len(last.samples), 1)))
        return AudioChunk(item.t, np.tile(last.samples, reps)[: len(item.samples)], item.rate)

    def _black(self, item):
        if isinstance(item, VideoFrame):
            return VideoFrame(item.t, np.zeros_like(item.image))
        return AudioChunk(item.t, np.zeros_like(item.samples), item.rate)

    def _noisy(self, item, snr: float):
        if isinstance(item, VideoFrame):
            power = max(float(np.var(item.image)), 100.0)  # the frame's contrast
            noisy = add_noise(item.image, snr, self._rng, power)
            return VideoFrame(item.t, np.clip(noisy, 0, 255).astype(np.uint8))
        noisy = add_noise(item.samples, snr, self._rng, self._speech_power)
        return AudioChunk(item.t, np.clip(noisy, -1.0, 1.0).astype(np.float32), item.rate)
