"""The prepared GPU script runs here on the CPU: it builds every model from its shipped
config (read from the safetensors header alone, or the face encoder's ONNX metadata without
the onnx package), times it, and refuses float16 off CUDA."""

import pytest

from streaming import torch_throughput as tt


def test_configs_come_from_the_shipped_headers():
    from models.checkpoint import read, weights_path

    for name in ("fusion", "face_encoder", "audio_encoder", "text_encoder"):
        assert tt.shipped_config(name) == read(weights_path(tt.WEIGHTS.parent, name))[1]["config"]


def test_throughput_rows_on_the_cpu(tmp_path, capsys):
    rows = tt.main(["--device", "cpu", "--batches", "1,4", "--seconds", "0.01", "--threads", "1", "--out", str(tmp_path / "t")])
    assert {r["model"] for r in rows} == {"fusion (LNLN)", "face encoder", "audio encoder", "text encoder"}
    assert sorted({r["batch"] for r in rows}) == [1, 4]
    assert all(r["items_per_s"] > 0 and r["ms_per_call"] > 0 for r in rows)
    assert "random weights of the shipped shapes" in (tmp_path / "t.md").read_text()
    with pytest.raises(SystemExit):
        tt.main(["--device", "cpu", "--half"])
