"""Which MetaSchedule search space each kernel is tuned in.

On CPUs every kernel gets MetaSchedule's plain LLVM space with tvmq's default float schedule
beside it; int8 kernels that the target's dot-product intrinsic computes get tvmq's int8 space,
tiled around the intrinsic (tvmq.kernels.intrinsics). MetaSchedule's own choice by target
would tensorize int8 kernels on AVX-512 CPUs with TVM's intrinsics, the VNNI one that LLVM
rejects and a vpmaddubsw one that overflows on 8-bit weights.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import meta_schedule as ms

from tvmq.kernels.float_schedule import tile_float_kernel
from tvmq.kernels.int8_schedule import tile_int8_kernel
from tvmq.kernels.intrinsics import DotIntrin, intrin_for, register_intrinsics
from tvmq.kernels.packing import tensorizable_block
from tvmq.kernels.rules import PackWeightsForIntrin, ScalarLoopsAroundIntrin
from tvmq.target import float_vectors


def cpu_space(vectors: tuple[int, int] | None) -> ms.space_generator.SpaceGenerator:
    """MetaSchedule's plain LLVM search space and, beside it where the CPU has float `vectors`
    (lanes, registers), the default float schedule (tvmq.kernels.float_schedule) as one more
    candidate."""
    if vectors is None:
        return ms.space_generator.PostOrderApply(sch_rules="llvm", postprocs="llvm", mutator_probs="llvm")
    return _beside_default_schedule(lambda sch: tile_float_kernel(sch, *vectors), "llvm", "llvm")


def int8_space(intrin: DotIntrin) -> ms.space_generator.SpaceGenerator:
    """MetaSchedule's LLVM rules with tiling around the intrinsic first, then the postprocessors
    that tensorize and lay the weights out for it; beside that search space, the fixed default
    int8 schedule (tvmq.kernels.int8_schedule) as one more candidate."""
    register_intrinsics()
    reuse_write = ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global")
    rules = [
        ms.schedule_rule.ApplyCustomRule(),
        PackWeightsForIntrin(intrin.isa),
        ms.schedule_rule.InlineConstantScalars(),
        ms.schedule_rule.AutoInline(
            into_producer=False,
            into_consumer=True,
            inline_const_tensor=True,
            disallow_if_then_else=True,
            require_injective=True,
            require_ordered=True,
            disallow_op=["tirx.exp"],
        ),
        ms.schedule_rule.MultiLevelTilingWithIntrin(
            intrin.name, structure="SSRSRS", max_innermost_factor=64, reuse_write=reuse_write
        ),
        ms.schedule_rule.MultiLevelTiling(structure="SSRSRS", max_innermost_factor=64, reuse_write=reuse_write),
        ms.schedule_rule.ParallelizeVectorizeUnroll(
            max_jobs_per_core=16, max_vectorize_extent=64, unroll_max_steps=[0, 16, 64, 512], unroll_explicit=True
        ),
        ms.schedule_rule.RandomComputeLocation(),
    ]
    postprocs = [
        ms.postproc.DisallowDynamicLoop(),
        ScalarLoopsAroundIntrin(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
        ms.postproc.RewriteTensorize(vectorize_init_loop=True),
    ]
    return _beside_default_schedule(lambda sch: tile_int8_kernel(sch, intrin), rules, postprocs)


def _beside_default_schedule(default_schedule, sch_rules, postprocs) -> ms.space_generator.SpaceGenerator:
    """The space `sch_rules` and `postprocs` search, united with the one schedule that
    `default_schedule` (schedule -> scheduled copy or None) makes without a log, so that tuning
    never ends with a kernel slower than the one compiling without a log would give."""
    searched = ms.space_generator.PostOrderApply(sch_rules=sch_rules, postprocs=postprocs, mutator_probs="llvm")

    def fixed_schedule(sch: tvm.s_tir.Schedule) -> list[tvm.s_tir.Schedule]:
        scheduled = default_schedule(sch)
        return [scheduled] if scheduled is not None else []

    fixed = ms.space_generator.ScheduleFn(fixed_schedule, sch_rules=[], postprocs=[], mutator_probs="llvm")
    return ms.space_generator.SpaceGeneratorUnion(
        [searched, fixed], sch_rules=sch_rules, postprocs=postprocs, mutator_probs="llvm"
    )


def default_schedule(context: ms.TuneContext) -> tvm.s_tir.Schedule | None:
    """The default schedule of the context's kernel as tuning measures it (post-processed), or
    None where its space holds none (see _beside_default_schedule, whose last design space it
    is)."""
    generator = context.space_generator
    if not isinstance(generator, ms.space_generator.SpaceGeneratorUnion):
        return None
    for sch in generator.space_generators[-1].generate_design_space(context.mod):
        if all(postproc.apply(sch) for postproc in generator.postprocs):
            return sch
    return None


def _tensorizes(context: ms.TuneContext) -> bool:
    """Whether some design space of the context's kernel really is tensorized once
    post-processed: the intrinsic's mapping can exist where its padding or packing cannot be
    done (a 64 x 10 matmul), and such kernels keep the default space."""
    for space in context.space_generator.generate_design_space(context.mod):
        if all(postproc.apply(space) for postproc in context.space_generator.postprocs) and any(
            inst.kind.name == "Tensorize" for inst in space.trace.insts
        ):
            return True
    return False


def tune_contexts(
    tasks: list[ms.ExtractedTask], work_dir: str, num_threads: int, seed: int, weights_7_bit: bool
) -> tuple[list[ms.TuneContext], list[float]]:
    """MetaSchedule's tune contexts for `tasks`, with the int8 search space for the kernels the
    target's intrinsic computes (a saturating one only when `weights_7_bit`: the model's weights
    fit it); every other kernel gets `cpu_space` on CPUs, MetaSchedule's choice on GPUs."""
    make = ms.relax_integration.extracted_tasks_to_tune_contexts
    cpu = bool(tasks) and tasks[0].target.kind.name == "llvm"
    default = cpu_space(float_vectors(tasks[0].target)) if cpu else "post-order-apply"
    contexts, weights = make(tasks, work_dir, space=default, num_threads=num_threads, seed=seed)
    intrin = intrin_for(contexts[0].target) if contexts else None
    if intrin is None or (intrin.saturates and not weights_7_bit):
        return contexts, weights
    candidates = [tensorizable_block(c.mod, intrin) is not None for c in contexts]
    if not any(candidates):
        return contexts, weights
    # Replaying a candidate's trace costs far more here than in the float space (the weight
    # layout transform and tensorize re-simplify the kernel): a smaller, shorter evolution keeps
    # a search round near a float one's time.
    search = ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=2)
    space = int8_space(intrin)
    tensorized, _ = make(tasks, work_dir, space=space, strategy=search, num_threads=num_threads, seed=seed)
    return [t if use and _tensorizes(t) else c for c, t, use in zip(contexts, tensorized, candidates)], weights
