"""Writing a deployable package directory: the linked library, atomically.

The package is assembled in a staging directory beside the destination and renamed into place
only once complete (tvmq.files), so a failed build leaves an existing package exactly as it
was. A directory that is not a tvmq package is never replaced.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tvmq.errors import BuildError
from tvmq.files import directory_written_atomically
from tvmq.metadata import METADATA_FILE
from tvmq.progress import step
from tvmq.target import TargetPreset, check_compiler


def check_replaceable(output_dir: Path) -> None:
    """Raise BuildError unless `output_dir` is absent, empty, or a tvmq package."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise BuildError(f"output {output_dir} exists and is not a directory")
    if any(output_dir.iterdir()) and not (output_dir / METADATA_FILE).is_file():
        raise BuildError(
            f"output directory {output_dir} is not empty and is not a tvmq package; "
            "refusing to replace it (choose another -o or remove it)"
        )


def write_package_atomically(output_dir: Path, fill: Callable[[Path], dict]) -> dict:
    """Call `fill(staging_dir)` to write the package's files, which returns the metadata dict;
    then write the metadata and move the complete package to `output_dir`."""
    output_dir = Path(output_dir).absolute()
    check_replaceable(output_dir)
    with directory_written_atomically(output_dir) as staging:
        metadata = fill(staging)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def export_library(executable, path: Path, preset: TargetPreset, pack_imports=None) -> None:
    """Write the executable as a shared library, linked by the preset's (cross) compiler;
    `pack_imports` replaces TVM's packing of device modules (see tvmq.compiler.cuda)."""
    import tvm.support.cc

    check_compiler(preset)
    fcompile = tvm.support.cc.cross_compiler(preset.compiler) if preset.compiler else None
    with step(f"linking {path.name}" + (f" with {preset.compiler}" if preset.compiler else "")):
        try:
            # -s: no symbol tables or debug info in a deployable library.
            extra = {"fpack_imports": pack_imports} if pack_imports else {}
            executable.export_library(str(path), fcompile=fcompile, options=["-s"], **extra)
        except Exception as err:
            raise BuildError(f"exporting the library for {preset.name} failed: {err}") from err
