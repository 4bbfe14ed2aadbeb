"""Codegen: a Relax module (float or integer) -> an executable for one target.

    lower     graph passes that shape the module for the target's kernels (channels-last
              layout, pads folded, calibration constants as kernel parameters, ...)
    pipeline  TVM's build pipeline with tvmq's kernels: a tuning log's records, else the
              default schedules (tvmq.kernels)

`observing_vm` runs a module on this machine that way: the modules calibration and the
quantization error report run (the float and simulated models returning the tensors they
observe), with those tensors returned in the layout they are computed in.
"""

from __future__ import annotations

import tvm
from tvm import relax

# Imported, it sizes TVM's thread pool to every core this process may use (TVM's own default is
# half the logical CPUs: one thread on a 2-vCPU machine); the models observing_vm builds run on it.
import tvmq.runtime.threads  # noqa: F401
from tvmq.codegen.lower import lower_for_target, outputs_as_computed
from tvmq.codegen.pipeline import build_executable
from tvmq.target import load_target

__all__ = ["observing_vm"]


def observing_vm(mod: tvm.IRModule) -> tuple[relax.VirtualMachine, list[tuple[int, ...] | None]]:
    """A module whose main returns a tuple of tensors to observe, lowered and compiled for this
    machine with the default schedules (all cores), those tensors returned as the kernels
    computed them (channels-last, not transposed back): the VM and, per output, the axes that
    np.transpose takes to view it in its declared layout (None where it is in that layout)."""
    preset = load_target("host")
    lowered, axes = outputs_as_computed(lower_for_target(mod, preset))
    return relax.VirtualMachine(build_executable(lowered, preset, warn_unscheduled=False), tvm.cpu()), axes
