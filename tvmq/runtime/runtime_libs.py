"""The TVM runtime (headers, libtvm_runtime.so, libtvm_ffi.so) that a C++ program links against,
for this machine or for an ARM board.

For this machine it is the installed apache-tvm and apache-tvm-ffi. For aarch64 it comes from
PyPI's aarch64 wheels of the same versions (tag manylinux_2_28_aarch64; manylinux2014 has
none), downloaded once with pip and unpacked into a cache: only the runtime libraries and
headers are kept (the wheel's 240 MB compiler library is not).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tvmq.errors import TvmqError
from tvmq.progress import step
from tvmq.target import this_machine

DEFAULT_CACHE = Path.home() / ".cache" / "tvmq"

# The pip platform tag of each architecture's wheels.
WHEEL_PLATFORMS = {"aarch64": "manylinux_2_28_aarch64"}
DISTRIBUTIONS = ("apache-tvm", "apache-tvm-ffi")
# What a C++ program needs from each wheel: include trees and the runtime libraries.
_KEEP = ("tvm/include/", "tvm_ffi/include/", "tvm/lib/libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so")


class RuntimeUnavailable(TvmqError):
    """The TVM runtime for an architecture cannot be found or downloaded."""


def versions() -> dict[str, str]:
    """The installed apache-tvm and apache-tvm-ffi versions: a board's runtime must match them."""
    return {name: importlib.metadata.version(name) for name in DISTRIBUTIONS}


def host_runtime() -> Path:
    """The folder holding this installation's tvm/ and tvm_ffi/ packages."""
    roots = {Path(importlib.util.find_spec(name).origin).parent.parent for name in ("tvm", "tvm_ffi")}
    if len(roots) != 1:
        raise RuntimeUnavailable(f"tvm and tvm_ffi are installed in different folders ({', '.join(map(str, roots))})")
    return roots.pop()


def cached_runtime_dir(arch: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    tag = "-".join(f"{name.removeprefix('apache-')}{version}" for name, version in versions().items())
    return Path(cache_dir) / f"{arch}-runtime" / tag


def runtime_for(arch: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The folder with tvm/{include,lib} and tvm_ffi/{include,lib} for `arch`: the installed
    runtime for this machine's architecture, else the cached (downloaded on first use) wheels."""
    if arch == this_machine():
        return host_runtime()
    if arch not in WHEEL_PLATFORMS:
        raise RuntimeUnavailable(f"no TVM runtime wheels are known for {arch} (known: {', '.join(WHEEL_PLATFORMS)})")
    root = cached_runtime_dir(arch, cache_dir)
    if not (root / "tvm" / "lib" / "libtvm_runtime.so").is_file():
        _download(arch, root)
    return root


def _download(arch: str, root: Path) -> None:
    """pip-download the wheels for `arch` and unpack the runtime parts into `root` atomically."""
    root.parent.mkdir(parents=True, exist_ok=True)
    requirements = [f"{name}=={version}" for name, version in versions().items()]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--platform", WHEEL_PLATFORMS[arch], *requirements]
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root.parent) as work:
        with step(f"downloading the {arch} TVM runtime ({', '.join(requirements)})"):
            result = subprocess.run([*command, "-d", work], capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise RuntimeUnavailable(
                f"cannot download the {arch} TVM runtime: `{' '.join(command)}` failed: {' '.join(tail)}"
            )
        staging = Path(work) / "runtime"
        for wheel in Path(work).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.startswith(_KEEP) and not member.endswith("/"):
                        archive.extract(member, staging)
        missing = [part for part in _KEEP[2:] if not (staging / part).is_file()]
        if missing:
            raise RuntimeUnavailable(f"the downloaded {arch} wheels lack {', '.join(missing)}")
        if root.exists():  # a concurrent download finished first; keep its copy
            return
        staging.rename(root)
