"""The replay driver: a recording's items pushed, in order, into a pipeline or a session, and
the stream closed at the recording's end. The simulator (``streaming.simulate``), the latency
benchmark (``streaming.bench``) and the UI's Replay tab (``app.sessions.start_replay``) all
replay through ``drive``.

    windows = drive("clip.mp4", pipe.push, flush=pipe.flush, realtime=True, on_window=print)

``push(item)`` takes one ``VideoFrame`` / ``AudioChunk`` and returns the windows that came
out (``Pipeline.push``, ``LiveSession.push``); ``flush(end)`` closes the stream and returns
the last windows (``Pipeline.flush``, ``LiveSession.finish``), called with the recording's
duration once every item is in (not after ``stop``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from streaming.sources import FileReplay, Item
from streaming.types import WindowResult

Push = Callable[[Item], "list[WindowResult] | None"]
Flush = Callable[["float | None"], "list[WindowResult] | None"]


def drive(
    source: FileReplay | str | Path,
    push: Push,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    loop: bool = False,
    flush: Flush | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
    on_item: Callable[[Item], None] | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> list[WindowResult]:
    """Replays ``source`` into ``push``; returns every window that came out, in order.

    ``source``: a recording's path, opened as ``FileReplay(path, realtime=realtime,
    speed=speed, loop=loop)`` (``realtime``: paced at the recording's own speed, ``speed``
    times faster), or a ``FileReplay`` already open, whose own options then hold (the three
    must be left at their defaults). ``on_window(w)``: called as each window comes out;
    ``on_item(item)``: after each item is pushed. ``stop``: an event or a callable, looked
    at before each item; once set the replay ends there, without ``flush``. ``flush``: called
    with the recording's duration (None when unknown) once the items are all in, or after a
    failure that ``on_error`` took: an exception while replaying goes to ``on_error(e)``, or
    is raised when there is none.
    """
    if isinstance(source, FileReplay):
        if realtime or speed != 1.0 or loop:
            raise ValueError("realtime, speed and loop apply to a path; an open FileReplay has its own")
        src = source
    else:
        src = FileReplay(source, sink=None, realtime=realtime, speed=speed, loop=loop)
    stopped = stop.is_set if isinstance(stop, threading.Event) else stop
    out: list[WindowResult] = []

    def take(windows) -> None:
        for w in windows or ():
            out.append(w)
            if on_window is not None:
                on_window(w)

    try:
        for item in src.items():
            if stopped is not None and stopped():
                return out
            take(push(item))
            if on_item is not None:
                on_item(item)
    except Exception as e:
        if on_error is None:
            raise
        on_error(e)
    if flush is not None:
        # the end of the recording closes the stream: the last words are committed and the
        # stretch after the last grid window (or a recording shorter than one) gets its window
        take(flush(src.duration or None))
    return out
