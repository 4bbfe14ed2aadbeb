"""Running a package on a board through TVM's RPC server (`python -m tvm.exec.rpc_server` there).

The checked library bytes are uploaded to the server, loaded there, and the VM runs on the
server's device; inputs go over the connection and outputs come back. Timing happens on the
board (TVM's time_evaluator runs remotely), so network latency is not measured.
"""

from __future__ import annotations

import os
from pathlib import Path

from tvmq.errors import PackageError, TvmqError
from tvmq.metadata import read_metadata
from tvmq.runtime.package import Package, read_verified_library
from tvmq.runtime.threads import BIG_CORES
from tvmq.target import TargetPreset


def parse_address(address: str, what: str = "RPC server") -> tuple[str, int]:
    """HOST:PORT of an RPC server or tracker, as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TvmqError(f"{what} address {address!r} is not HOST:PORT")
    return host, int(port)


class RemotePackage(Package):
    """A package loaded on an RPC server; `run` and `benchmark` execute there."""

    def __init__(self, path: Path, metadata, library, device, session):
        super().__init__(path, metadata, library, device)
        self.session = session  # keeps the connection open while the package is used

    @classmethod
    def connect(cls, path: str | os.PathLike, address: str, timeout_s: int = 600) -> RemotePackage:
        """Upload the package's library to the RPC server at `address` (HOST:PORT) and load it."""
        from tvm import rpc

        path = Path(path)
        metadata = read_metadata(path)
        library = read_verified_library(path, metadata)
        host, port = parse_address(address)
        try:
            session = rpc.connect(host, port, session_timeout=timeout_s)
        except Exception as err:
            raise PackageError(f"cannot connect to the RPC server at {address}: {err}") from None
        remote_name = f"tvmq-{metadata.library.sha256[:16]}.so"
        kind = TargetPreset.from_json(metadata.target).kind
        try:
            session.upload(bytearray(library), target=remote_name)
            device = session.cuda(0) if kind == "cuda" else session.cpu(0)
            return cls(path, metadata, session.load_module(remote_name), device, session)
        except Exception as err:
            raise PackageError(
                f"the RPC server at {address} cannot load {path} (built for {metadata.target['name']}): "
                f"{str(err).strip().splitlines()[-1]}"
            ) from None

    def profile(self, inputs=None, threads=None):
        raise PackageError("profiling needs the package loaded here: the kernels are timed one by one in this process")

    def _use_threads(self, threads: int | None) -> int:
        if threads is not None:
            if threads < 1:
                raise TvmqError(f"--threads must be at least 1, got {threads}")
            self.session.get_function("runtime.config_threadpool")(BIG_CORES, threads)
        return int(self.session.get_function("runtime.NumThreads")())
