"""The MetaSchedule schedule rule and postprocessor of tvmq's int8 search space
(tvmq.kernels.spaces.int8_space): packing int8 kernels' weights for the target's intrinsic
before MultiLevelTilingWithIntrin tiles them, and keeping the loops around a tensorized block
scalar.
"""

from __future__ import annotations

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from tvmq.kernels.intrinsics import INTRINSICS, DotIntrin
from tvmq.kernels.packing import blocks_under, pack_weights_for_intrin, packing_plan


def _feeds_intrin_data(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, intrin: DotIntrin) -> bool:
    """Whether `block` writes the activations of a reduction the intrinsic computes."""
    written = sch.get(block).writes
    if len(written) != 1 or written[0].source.dtype != intrin.activation:
        return False
    for consumer in sch.get_consumers(block):
        plan = packing_plan(sch, consumer, intrin)
        if plan is not None and any(
            r.source.same_as(written[0].source) for i, r in enumerate(sch.get(consumer).reads) if i != plan.weight_index
        ):
            return True
    return False


@derived_object
class PackWeightsForIntrin(ms.schedule_rule.PyScheduleRule):
    """Prepares an int8 -> s32 block for MultiLevelTilingWithIntrin (pack_weights_for_intrin)
    and keeps the padding of its activations a stage of its own."""

    def __init__(self, isa: str):
        self.intrin = INTRINSICS[isa]

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV) -> list[tvm.s_tir.Schedule]:
        if _feeds_intrin_data(sch, block, self.intrin):
            # Padding inlined into the reduction turns its activation reads into if_then_else
            # expressions, which the intrinsic cannot take: padding stays a stage of its own.
            sch.annotate(block, "meta_schedule.inline_rule", "disable")
            return [sch]
        plan = packing_plan(sch, block, self.intrin)
        prepared = None if plan is None else pack_weights_for_intrin(sch, sch.get(block).name_hint, plan, self.intrin)
        return [prepared or sch]

    def clone(self) -> ms.schedule_rule.ScheduleRule:
        return PackWeightsForIntrin(self.intrin.isa)


@derived_object
class ScalarLoopsAroundIntrin(ms.postproc.PyPostproc):
    """Drops the loop vectorization that ParallelizeVectorizeUnroll asked for in kernels that will
    be tensorized: TVM's vectorizer cannot widen the intrinsic's vector code when it lands in a
    vectorized loop ("Cannot broadcast lanes=32 to 64"), which failed about half of the
    tensorized candidates. Their epilogues stay scalar loops for LLVM to vectorize."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch: tvm.s_tir.Schedule) -> bool:
        for gv, func in sch.mod.functions.items():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            root = sch.get_sblock("root", func_name=gv.name_hint)
            if "meta_schedule.vectorize" in sch.get(root).annotations and any(
                "meta_schedule.auto_tensorize" in sch.get(block).annotations for block in blocks_under(sch, root)
            ):
                sch.unannotate(root, "meta_schedule.vectorize")
        return True

    def clone(self) -> ms.postproc.Postproc:
        return ScalarLoopsAroundIntrin()
