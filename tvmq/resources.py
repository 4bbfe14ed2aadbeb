"""Data shipped with tvmq: target presets (targets/) and the bundled example (examples/).

Installed, they live inside the package as `tvmq.presets` and `tvmq.examples`; run from a source
checkout without installing, they are read from the repository's top-level folders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(package: str, repo_folder: str) -> Path:
    # Data folders hold no __init__.py: they are namespace packages with one search location.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return _REPO_ROOT / repo_folder
    return Path(list(spec.submodule_search_locations)[0])


def presets_dir() -> Path:
    return _data_dir("tvmq.presets", "targets")


def examples_dir() -> Path:
    return _data_dir("tvmq.examples", "examples")
