"""The size of TVM's CPU thread pool.

TVM sizes its pool once, on first use, from TVM_NUM_THREADS or else half the logical CPUs (it
assumes hyper-threading, which leaves a 2-vCPU machine with 1 thread); later requests cannot
grow it. So before the pool exists, tvmq raises the ceiling to every CPU this process may use,
and each benchmark then picks its thread count below that ceiling.
"""

from __future__ import annotations

import os

from tvmq.errors import TvmqError
from tvmq.target import available_cores

# Must run before TVM creates its thread pool, i.e. before any library is run.
os.environ.setdefault("TVM_NUM_THREADS", str(available_cores()))

BIG_CORES = 1  # TVM's affinity mode "big cores": all cores on a homogeneous CPU


def set_num_threads(threads: int) -> int:
    """Use `threads` workers for subsequent runs; returns the count TVM reports."""
    import tvm

    ceiling = int(os.environ["TVM_NUM_THREADS"])
    if not 1 <= threads <= ceiling:
        raise TvmqError(f"--threads must be between 1 and {ceiling} on this machine, got {threads}")
    tvm.get_global_func("runtime.config_threadpool")(BIG_CORES, threads)
    return num_threads()


def num_threads() -> int:
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())
