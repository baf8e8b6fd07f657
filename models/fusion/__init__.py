"""The robust fusion models, chosen by name at run time (``--fusion``):

- ``lnln``: language-dominated noise-resistant learning (``models.fusion.lnln``), the default;
- ``dashfusion``: dual-stream alignment, hierarchical bottleneck fusion (``models.fusion.dashfusion``);
- ``hme``: hyper-modality enhancement from a memory bank, uncertainty-aware fusion (``models.fusion.hme``).

All three take ``models.types.FusionInputs`` and return the same outputs
(``models.fusion.base``), train with the same command and data
(``python -m models.training.train --set fusion_model=NAME``) and ship as
``assets/weights/<stem>.safetensors`` and ``assets/onnx/<stem>.onnx`` with their calibration
under runtime.json's ``fusions``. ``FUSIONS[name].stem`` is the file stem.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.fusion.dashfusion import DashFusion, DashFusionConfig
from models.fusion.hme import HME, HMEConfig
from models.fusion.lnln import LNLN, LNLNConfig


@dataclass(frozen=True)
class FusionSpec:
    name: str
    model: type
    config: type
    stem: str  # file stem in assets/weights, assets/onnx and the training run folder
    title: str


FUSIONS = {
    "lnln": FusionSpec("lnln", LNLN, LNLNConfig, "fusion", "LNLN"),
    "dashfusion": FusionSpec("dashfusion", DashFusion, DashFusionConfig, "fusion_dashfusion", "DashFusion"),
    "hme": FusionSpec("hme", HME, HMEConfig, "fusion_hme", "HME"),
}
DEFAULT_FUSION = "lnln"


def fusion_spec(name: str) -> FusionSpec:
    """The spec of fusion ``name``; a clear error for an unknown one."""
    try:
        return FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}: choose one of {', '.join(FUSIONS)}") from None
