"""The schedule GPU kernels get when no tuning log holds one: TVM's dlight rules."""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import dlight as dl

from tvmq.kernels.tiling import SCHEDULE_ATTR


def default_gpu_schedule():
    """A module pass scheduling every unscheduled kernel with TVM's dlight GPU rules, first
    rule that applies wins, as TVM's own CUDA pipeline does, except that a rule which fails on a
    kernel is passed over for the next one instead of failing the build. dlight's Matmul rule
    asserts on a 1x1 convolution fused with the padding of the next layer (conv + bias + ReLU6
    + pad); a later rule schedules them."""
    rules = [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()]

    @tvm.transform.module_pass(opt_level=0, name="tvmq.DefaultGpuSchedule")
    def schedule(mod, _ctx):
        target = tvm.target.Target.current(allow_none=False)
        for global_var, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", 0) == 1:
                continue
            for rule in rules:
                try:
                    space = rule.apply(func, target, False)
                except Exception:  # noqa: BLE001 - this rule cannot schedule this kernel; try the next
                    continue
                if space is not None:
                    sch = space[0] if isinstance(space, list) else space
                    mod[global_var] = sch.mod["main"].with_attrs(
                        {"tirx.is_scheduled": True, SCHEDULE_ATTR: f"dlight {type(rule).__name__}"}
                    )
                    break
        return mod

    return schedule
