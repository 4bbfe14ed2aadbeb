"""The builder MetaSchedule compiles tuning candidates with.

TVM's default build function imports `tvm.s_tir.tensor_intrin` first, which can take longer
than its build timeout in every fresh worker process, so every candidate times out. tvmq's build function does the same build without that import (tvmq registers the
tensor intrinsics it uses itself). For cross targets candidates are linked into shared
libraries by the target's cross compiler, so a board needs no compiler to run them.
"""

from __future__ import annotations

import functools

import tvm
from tvm.s_tir import meta_schedule as ms

BUILD_FUNCTION = "tvmq.tune.build"
EXPORT_FUNCTION = "tvmq.tune.export"


def build(mod: tvm.IRModule, target: tvm.target.Target, _params) -> tvm.runtime.Module:
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_shared_library(module: tvm.runtime.Module, compiler: str) -> str:
    """Link a candidate into a shared library with `compiler`; returns its path."""
    import tempfile

    import tvm.support.cc

    path = f"{tempfile.mkdtemp(prefix='tvmq-candidate-')}/candidate.so"
    module.export_library(path, fcompile=tvm.support.cc.cross_compiler(compiler))
    return path


def register_functions(compiler: str | None = None) -> None:
    """Make the build (and cross export) functions callable by name; runs in each builder
    worker process too."""
    tvm.register_global_func(BUILD_FUNCTION, build, override=True)
    if compiler:
        tvm.register_global_func(
            EXPORT_FUNCTION, functools.partial(export_shared_library, compiler=compiler), override=True
        )


def local_builder(
    max_workers: int, compiler: str | None = None, timeout_seconds: float = 60.0
) -> ms.builder.LocalBuilder:
    """A LocalBuilder using tvmq's build function, linking with `compiler` for cross targets."""
    register_functions(compiler)
    return ms.builder.LocalBuilder(
        f_build=BUILD_FUNCTION,
        f_export=EXPORT_FUNCTION if compiler else None,
        initializer=functools.partial(register_functions, compiler),
        max_workers=max_workers,
        timeout_sec=timeout_seconds,
    )
