"""Sources: transports that turn cameras, microphones, browser streams and files into
timestamped items, kept apart from processing.

Every source hands ``VideoFrame`` (RGB uint8 [H, W, 3], validated as it is made) and
``AudioChunk`` items to a sink, a callable ``sink(item)``. Audio always leaves a source as
float32 mono 16 kHz (``models.features.audio.to_mono_16k``). ``t`` is seconds on the
pipeline clock.

- ``BrowserInput`` (``browser``): converts what Gradio's streaming webcam / microphone send.
- ``LocalCamera`` / ``LocalMicrophone`` (``local``): capture threads over OpenCV and
  PortAudio. A missing device never raises: ``.error`` says why and ``on_error(message)``
  is called, so the pipeline can mark the modality DROPPED.
- ``FileReplay`` (``files``): replays a video or audio file as if it were live (or as fast
  as possible); ``streaming.replay.drive`` pushes one through a pipeline.
- ``read_media`` / ``media_duration`` / ``write_media`` / ``decode_audio`` (``files``):
  whole-file helpers for tests, the simulator and the UI.
- ``base``: what they share (``SourceError``, the item and sink types, ``Worker``).
"""

from streaming.sources.base import (
    AUDIO_SUFFIXES,
    CHUNK_S,
    MAX_CHUNK_S,
    MAX_RATE,
    MIN_RATE,
    NO_PORTAUDIO,
    Clock,
    Item,
    Sink,
    SourceError,
)
from streaming.sources.browser import BrowserInput
from streaming.sources.files import (
    FileReplay,
    decode_audio,
    media_duration,
    read_media,
    write_media,
)
from streaming.sources.files import _decode_soundfile as _decode_soundfile  # the soundfile path, tested alone
from streaming.sources.local import LocalCamera, LocalMicrophone, probe_local_devices

__all__ = [
    "AUDIO_SUFFIXES",
    "CHUNK_S",
    "MAX_CHUNK_S",
    "MAX_RATE",
    "MIN_RATE",
    "NO_PORTAUDIO",
    "BrowserInput",
    "Clock",
    "FileReplay",
    "Item",
    "LocalCamera",
    "LocalMicrophone",
    "Sink",
    "SourceError",
    "decode_audio",
    "media_duration",
    "probe_local_devices",
    "read_media",
    "write_media",
]
