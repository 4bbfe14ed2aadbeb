"""Codegen: a Relax module (float or integer) -> an executable for one target.

    lower     graph passes that shape the module for the target's kernels (channels-last
              layout, pads folded, calibration constants as kernel parameters, ...)
    pipeline  TVM's build pipeline with tvmq's kernels: a tuning log's records, else the
              default schedules (tvmq.kernels)

`host_vm` runs a module on this machine that way: how calibration and the quantization error
report run the float and simulated models.
"""

from __future__ import annotations

import tvm
from tvm import relax

from tvmq.codegen.lower import lower_for_target
from tvmq.codegen.pipeline import build_executable
from tvmq.target import load_target

__all__ = ["host_vm"]


def host_vm(mod: tvm.IRModule) -> relax.VirtualMachine:
    """`mod` lowered and compiled for this machine with the default schedules (all cores),
    ready to run."""
    preset = load_target("host")
    return relax.VirtualMachine(build_executable(lower_for_target(mod, preset), preset), tvm.cpu())
