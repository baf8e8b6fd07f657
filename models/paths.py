"""Where things live: the shared data, the feature cache, the shipped assets.

Each can be moved with an environment variable (the command-line tools also take flags):
- ``MSA_DATA_ROOT``  the labelled data (default ``../shared/data`` beside the repository)
- ``MSA_CACHE_DIR``  cached features and training runs (default ``.cache/`` in the repository)
- ``MSA_ASSETS_DIR`` shipped weights and model card (default ``assets/``)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root(override: str | os.PathLike | None = None) -> Path:
    p = Path(override or os.environ.get("MSA_DATA_ROOT") or REPO_ROOT.parent / "shared" / "data")
    if not p.is_dir():
        raise FileNotFoundError(
            f"data root {p} not found; pass --data or set MSA_DATA_ROOT to the folder holding text/, audio/, vision/"
        )
    return p


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    p = Path(override or os.environ.get("MSA_CACHE_DIR") or REPO_ROOT / ".cache")
    p.mkdir(parents=True, exist_ok=True)
    return p


def assets_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("MSA_ASSETS_DIR") or REPO_ROOT / "assets")
