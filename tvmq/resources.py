"""Data shipped with tvmq: target presets (targets/) and the bundled example (examples/).

Installed, they live inside the package as `tvmq.presets` and `tvmq.examples`; run from a source
checkout without installing, they are read from the repository's top-level folders.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(package: str, repo_folder: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        return _REPO_ROOT / repo_folder


def presets_dir() -> Path:
    return _data_dir("tvmq.presets", "targets")


def examples_dir() -> Path:
    return _data_dir("tvmq.examples", "examples")
