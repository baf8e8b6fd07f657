"""Units of the trainers: config overrides (``models.training.config``), the command line
(``models.training.train``), CutMix, the face epoch on the CPU and the bf16 choice
(``models.training.face``), and ``models.training.best.BestWeights``."""

from pathlib import Path

import pytest
import torch

from models.encoders.face import FaceEncoder, FaceEncoderConfig
from models.training import config, face, train
from models.training.best import BestWeights


def test_apply_overrides_parses_each_field_type():
    cfg = config.TrainConfig()
    config.apply_overrides(cfg, ["face_epochs=7", "face_cutmix=0.25", "face_bf16=false", "device=cpu"])
    assert (cfg.face_epochs, cfg.face_cutmix, cfg.face_bf16, cfg.device) == (7, 0.25, False, "cpu")
    assert isinstance(cfg.face_epochs, int) and isinstance(cfg.face_cutmix, float)


@pytest.mark.parametrize("item", ["nope=1", "face_epochs", "face_epochs=1.5", "face_bf16=maybe", "face_lr=fast"])
def test_apply_overrides_rejects_bad_items(item):
    with pytest.raises(ValueError, match="--set"):
        config.apply_overrides(config.TrainConfig(), [item])


def test_cli_reports_bad_override_and_missing_cuda(tmp_path):
    with pytest.raises(SystemExit):
        train.main(["--cache", str(tmp_path), "--stages", "face", "--set", "face_width=wide"])
    with pytest.raises(SystemExit):  # the device has its own flag, which would override it
        train.main(["--cache", str(tmp_path), "--stages", "face", "--set", "device=cuda"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            train.main(["--cache", str(tmp_path), "--stages", "face", "--device", "cuda"])


def test_cutmix_pastes_one_box_and_reports_own_share():
    n, h, w = 16, 44, 44
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, h, w).contiguous()
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        mixed, partner, lam = face.cutmix(x, gen)
        assert mixed.shape == x.shape and 0.0 <= lam <= 1.0
        for i in range(n):
            own = (mixed[i] == i).float().mean().item()
            if partner[i] == i:  # pasted onto itself: nothing changes
                assert own == 1.0
                continue
            assert own == pytest.approx(lam, abs=1e-6)
            assert torch.all((mixed[i] == i) | (mixed[i] == partner[i].item()))
    assert torch.equal(x[:, 0, 0, 0], torch.arange(n, dtype=torch.float32))  # input untouched


def test_face_epoch_with_cutmix_updates_weights_on_cpu():
    torch.manual_seed(0)
    cfg = config.TrainConfig(face_batch=16, face_cutmix=1.0, face_bf16=False, device="cpu")
    model = FaceEncoder(FaceEncoderConfig(width=8, blocks=1)).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(48, 1, 48, 48)
    y = torch.randint(0, 7, (48,))
    face._face_epoch(cfg, model, opt, x, y, torch.Generator().manual_seed(0), "test epoch")
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_bf16_autocast_only_where_the_hardware_has_it():
    assert face.bf16_autocast("cuda") is True
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert face.bf16_autocast("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize(
    "lower, ties, scores, taken, kept",
    [
        # text, fusion: strictly lower; a tie keeps the earlier epoch
        (True, False, [0.5, 0.4, 0.4, 0.6], [True, True, False, False], 1),
        # speech, face: higher or equal; a tie takes the later epoch
        (False, True, [0.5, 0.6, 0.6, 0.2], [True, True, True, False], 2),
        # a NaN score is never kept
        (True, False, [float("nan"), 0.3, 0.3], [False, True, False], 1),
    ],
)
def test_best_weights_keeps_the_best_epoch_with_its_tie_rule(lower, ties, scores, taken, kept):
    model = torch.nn.Linear(2, 1)
    best = BestWeights(lower_is_better=lower, take_ties=ties)
    for i, score in enumerate(scores):
        with torch.no_grad():
            model.weight.fill_(float(i))
        assert best.update(score, model) == taken[i]
    assert best.score == scores[kept]
    with torch.no_grad():
        model.weight.fill_(-1.0)
    best.restore(model)
    assert torch.all(model.weight == float(kept))


def test_best_weights_copies_and_refuses_to_restore_nothing():
    model = torch.nn.Linear(2, 1)
    best = BestWeights(lower_is_better=True)
    with pytest.raises(RuntimeError):
        best.restore(model)
    best.keep(1.0, model)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(best.state["weight"], model.weight)  # a copy, not the live tensor
    assert not best.update(1.0, model) and best.update(0.5, model)
