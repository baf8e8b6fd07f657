"""What one visitor can send: every limit of the app in one place.

A public Space is open to anyone; these bound what one browser tab (or a script speaking
Gradio's HTTP protocol) can make the server hold or compute. Each is enforced where the input
comes in, and going over it is never a crash: the excess is refused with a message for the
page, cut with a visible notice, or dropped and counted (``LiveSession.limited``).

==========================  =========  ====================================================
limit                       value      what happens beyond it
==========================  =========  ====================================================
``MAX_UPLOAD_MB``           200        Gradio refuses the upload (``launch(max_file_size)``)
``MAX_RECORDING_S``         600        Replay refuses a recording whose header says longer,
                                       and stops reading one that runs past it; One window
                                       leaves such a recording out, with a note (no more
                                       than this is ever decoded)
``MAX_WINDOW_AUDIO_S``      30         One window reads the last 30 s of a longer recording
``MAX_TEXT_CHARS``          10,000     One window cuts the transcript, with a notice
``MAX_FRAME_SIDE``          4,096      a larger frame or picture is scaled down before analysis;
                                       Replay refuses a recording with larger frames (it
                                       decodes every frame at full size)
``MAX_DECODE_SIDE``         8,192      a picture larger on a side is refused before it is
                                       decoded (one such decode takes over 200 MB)
``MAX_DECODE_S``            30         an upload that ffprobe or ffmpeg takes longer to read
                                       is refused (a decoder stuck on a crafted file)
``MAX_FRAMES_PER_S``        10         a session's camera frames beyond it are dropped, counted
``MAX_AUDIO_S_PER_S``       2.0        a session's audio beyond it (seconds of audio per
                                       second) is dropped, counted
``MAX_SESSIONS``            6          live sessions at once; the next tab is told the
                                       server is busy (the performance report's real-time
                                       count on 2 cores)
``QUEUE_MAX_SIZE``          64         events waiting in Gradio's queue; beyond it Gradio
                                       answers "queue full"
``IDLE_TIMEOUT_S``          120        a live session with no input for this long is closed
                                       and its memory freed
==========================  =========  ====================================================
"""

from __future__ import annotations

MAX_UPLOAD_MB = 200
MAX_RECORDING_S = 600.0
MAX_WINDOW_AUDIO_S = 30.0
MAX_TEXT_CHARS = 10_000
MAX_FRAME_SIDE = 4096
MAX_DECODE_SIDE = 2 * MAX_FRAME_SIDE
MAX_DECODE_S = 30.0
MAX_FRAMES_PER_S = 10.0
MAX_AUDIO_S_PER_S = 2.0
MAX_SESSIONS = 6
QUEUE_MAX_SIZE = 64
IDLE_TIMEOUT_S = 120.0
