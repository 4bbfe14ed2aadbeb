"""The builder MetaSchedule compiles tuning candidates with.

TVM's default build function imports `tvm.s_tir.tensor_intrin` first, which takes 60-110 s on
these machines, in every fresh worker process, against a 30 s build timeout: every candidate
timed out. tvmq's build function does the same build without that import (tvmq registers the
tensor intrinsics it uses itself).
"""

from __future__ import annotations

import tvm
from tvm.s_tir import meta_schedule as ms

BUILD_FUNCTION = "tvmq.tune.build"


def build(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def register_build_function() -> None:
    """Make `build` callable by name; runs in each builder worker process too."""
    tvm.register_global_func(BUILD_FUNCTION, build, override=True)


def local_builder(max_workers: int, timeout_seconds: float = 60.0) -> ms.builder.LocalBuilder:
    register_build_function()
    return ms.builder.LocalBuilder(
        f_build=BUILD_FUNCTION,
        initializer=register_build_function,
        max_workers=max_workers,
        timeout_sec=timeout_seconds,
    )
