"""Reading arrays from users' files, and writing files and folders so that readers never see
half of one: written beside the target under a temporary name, renamed over it only once
complete (a killed or failed write leaves the old file or folder, or none)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tvmq.errors import InputError


def _read_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace `path` with what `write` writes to the open binary file it is given."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); the result gets what open() would give it.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name; an InputError naming `what` (e.g. "calibration
    data") and the file if it cannot be read or is not an .npz archive."""
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{what} {path} is not an .npz archive of arrays keyed by input name")
            with data:
                return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"cannot read {what} {path}: {err}") from None


def save_npz_atomically(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    write_atomically(path, lambda f: np.savez(f, **arrays))


@contextlib.contextmanager
def directory_written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside `path` to fill; when the block ends without an error the
    complete folder replaces `path` (its old content, if any, is removed), and on an error it
    is removed and `path` is left as it was."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp's 0700 would stick to the result
        yield staging
        _swap_into_place(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, path: Path) -> None:
    if not path.exists():
        os.rename(staging, path)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, retired / path.name)
    try:
        os.rename(staging, path)
    except OSError:
        os.rename(retired / path.name, path)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)
