"""Int8 kernels on x86 and ARM: dot-product tensor intrinsics and the MetaSchedule rules that
prepare int8 conv2d and matmul for them (the search space they make: tvmq.tune.spaces).

TVM 0.27 ships no usable x86 int8 intrinsic (its VNNI one is rejected by LLVM) and no default
rule that tensorizes int8 kernels for tvmq, so tuned int8 code is ordinary scalar-widening
loops. Each intrinsic here adds four activation x int8 weight products into each of its int32
lanes, with the best instructions the target has (tvmq.target.int8_dot_isa):
  avx512vnni  x86, u8 x s8: vpdpbusd, 16 lanes, products summed straight into int32;
  avx512bw    x86, u8 x s8: vpmaddubsw + vpmaddwd on zmm, 16 lanes;
  avx2        x86, u8 x s8: vpmaddubsw + vpmaddwd on ymm, 8 lanes;
  dotprod     ARM, s8 x s8: sdot, 4 lanes;
  neon        ARM, s8 x s8: smull + saddlp + addp, 4 lanes (Cortex-A72 has no sdot).
vpmaddubsw sums pairs of u8 x s8 products into int16, saturating when a pair exceeds 32767
(255 x 127 twice): results are exact when weights stay within 7 bits (QConfig.reduce_range).
The others are exact for any int8 weights.

Tensorizing needs the weights laid out [.., N/lanes, .., K/4, lanes, 4]; MetaSchedule's
RewriteLayout postprocessor picks that layout for constant weights (marked layout-free before
tuning) and the compiler then folds the transformation into the constants once, at compile time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import TensorIntrin
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.schedule.analysis import get_auto_tensorize_mapping_info
from tvm.script import tirx as T

from tvmq.quantize.graph import constant_value, is_constant
from tvmq.target import SATURATING_INT8_DOT_ISAS, int8_dot_isa

REDUCE = 4  # u8 x s8 products summed into each int32 lane
# The annotation on every block that packs weights for an intrinsic: it keeps MetaSchedule's
# rules off the copy, and tells the compiler which blocks it may evaluate on the constant weights.
WEIGHT_PACKER = ("schedule_rule", "None")


def _dot_description(lanes: int, activation: str) -> tvm.tirx.PrimFunc:
    """What every intrinsic computes: C[i] += sum_k A[k] * B[i, k] for `lanes` outputs, A the
    activations (uint8 on x86, int8 on ARM), B the int8 weights."""

    @T.prim_func(s_tir=True)
    def description(
        A: T.Buffer((4,), activation, offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return description


def _pmaddubsw_dot(lanes: int, pmaddubsw: str, pmaddwd: str) -> tvm.tirx.PrimFunc:
    """The description with vpmaddubsw (u8 x s8 pairs summed into int16, saturating) + vpmaddwd
    (int16 pairs summed into int32), for ymm (8 lanes) or zmm (16)."""
    bytes_u8, bytes_i8, pairs, sums = f"uint8x{4 * lanes}", f"int8x{4 * lanes}", f"int16x{2 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def implementation(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # The 4 activations as one int32, broadcast to every lane, seen again as bytes.
            a_bytes = T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes), dtype=bytes_u8
            )
            pair_sums = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(pmaddubsw), a_bytes, B.vload([0, 0], dtype=bytes_i8), dtype=pairs
            )
            C[T.ramp(T.int32(0), 1, lanes)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(pmaddwd), pair_sums, T.broadcast(T.int16(1), 2 * lanes), dtype=sums
            )

    return implementation


def _accumulating_dot(lanes: int, activation: str, instruction: str) -> tvm.tirx.PrimFunc:
    """The description with one instruction that adds four byte products into each int32 lane
    of an accumulator: vpdpbusd (u8 x s8, 16 lanes) or sdot (s8 x s8, 4 lanes). LLVM takes the
    bytes as byte vectors (TVM's own VNNI intrinsic passes <16 x i32>, which this LLVM rejects)."""
    activation_bytes, weight_bytes, sums = f"{activation}x{4 * lanes}", f"int8x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def implementation(
        A: T.Buffer((4,), activation, offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            a_bytes = T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], f"{activation}x4"), dtype="int32"), lanes),
                dtype=activation_bytes,
            )
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(instruction),
                C.vload([0], dtype=sums),
                a_bytes,
                B.vload([0, 0], dtype=weight_bytes),
                dtype=sums,
            )

    return implementation


@T.prim_func(s_tir=True)
def _smull_dot_4x4(
    A: T.Buffer((4,), "int8", offset_factor=1),
    B: T.Buffer((4, 4), "int8", offset_factor=1),
    C: T.Buffer((4,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:4], A[0:4], B[0:4, 0:4])
        T.writes(C[0:4])
        # Without sdot: the 4 activations twice against two weight rows at a time, products in
        # int16 (smull; |s8 x s8| <= 2^14, exact), neighbours added into int32 (saddlp), then
        # the two halves of each row added (addp).
        a_twice = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 2), dtype="int8x8")
        weights = B.vload([0, 0], dtype="int8x16")
        rows01 = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
            a_twice,
            T.vectorlow(weights, dtype="int8x8"),
            dtype="int16x8",
        )
        rows23 = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
            a_twice,
            T.vectorhigh(weights, dtype="int8x8"),
            dtype="int16x8",
        )
        C[T.ramp(T.int32(0), 1, 4)] += T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp.v4i32"),
            T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"), rows01, dtype="int32x4"
            ),
            T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"), rows23, dtype="int32x4"
            ),
            dtype="int32x4",
        )


@dataclass(frozen=True)
class DotIntrin:
    """A registered u8 x s8 -> s32 tensor intrinsic: `lanes` int32 sums of 4 products each."""

    name: str
    isa: str  # the LLVM CPU feature it needs (tvmq.target.INT8_DOT_ISAS)
    lanes: int
    activation: str  # the activations' dtype (the weights are int8)
    implementation: tvm.tirx.PrimFunc = field(repr=False)

    @property
    def saturates(self) -> bool:
        """Exact only for weights within 7 bits (int16 pair sums)."""
        return self.isa in SATURATING_INT8_DOT_ISAS

    @property
    def description(self) -> tvm.tirx.PrimFunc:
        return _DESCRIPTIONS[self.lanes, self.activation]


_DESCRIPTIONS = {(lanes, a): _dot_description(lanes, a) for lanes, a in ((16, "uint8"), (8, "uint8"), (4, "int8"))}
INTRINSICS = {
    intrin.isa: intrin
    for intrin in (
        DotIntrin(
            "tvmq_avx512vnni_u8s8i32_dot_16x4",
            "avx512vnni",
            16,
            "uint8",
            _accumulating_dot(16, "uint8", "llvm.x86.avx512.vpdpbusd.512"),
        ),
        DotIntrin(
            "tvmq_avx512bw_u8s8i32_dot_16x4",
            "avx512bw",
            16,
            "uint8",
            _pmaddubsw_dot(16, "llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512"),
        ),
        DotIntrin(
            "tvmq_avx2_u8s8i32_dot_8x4",
            "avx2",
            8,
            "uint8",
            _pmaddubsw_dot(8, "llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
        ),
        DotIntrin(
            "tvmq_sdot_s8s8i32_dot_4x4",
            "dotprod",
            4,
            "int8",
            _accumulating_dot(4, "int8", "llvm.aarch64.neon.sdot.v4i32.v16i8"),
        ),
        DotIntrin("tvmq_neon_s8s8i32_dot_4x4", "neon", 4, "int8", _smull_dot_4x4),
    )
}


def register_intrinsics() -> None:
    """Register tvmq's intrinsics with TVM: tuning tensorizes with them and compiling with a log
    replays records that name them."""
    for intrin in INTRINSICS.values():
        TensorIntrin.register(intrin.name, intrin.description, intrin.implementation, override=True)


def intrin_for(target: tvm.target.Target) -> DotIntrin | None:
    """The intrinsic tvmq's int8 kernels use on `target`, or None."""
    return INTRINSICS.get(int8_dot_isa(target))


def intrin_named_in(text: str) -> DotIntrin | None:
    """The intrinsic a tuning record's trace (or its JSON) names, or None: the kernel it
    schedules is tensorized with that intrinsic."""
    return next((intrin for intrin in INTRINSICS.values() if intrin.name in text), None)


def record_intrin(record: ms.database.TuningRecord) -> DotIntrin | None:
    """The intrinsic a tuning record's kernel is tensorized with, or None."""
    return intrin_named_in(str(record.trace))


def weights_within_7_bits(mod: tvm.IRModule) -> bool:
    """Whether every int8 constant (the weights) of a Relax module lies in [-64, 64], where two
    u8 x s8 products sum within int16 (255 * 128 = 32640): the saturating intrinsics are exact
    for such models only (see QConfig.reduce_range)."""
    from tvm import relax

    weights = []

    def visit(expr):
        if is_constant(expr) and expr.value.dtype == "int8":
            weights.append(constant_value(expr))

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return all(w.size == 0 or (w.min() >= -64 and w.max() <= 64) for w in weights)


def tensorizable_block(mod: tvm.IRModule, intrin: DotIntrin) -> str | None:
    """The name of a block of `mod` that the intrinsic computes (u8 x s8 products summed into
    int32, after reindexing), or None: the test that decides which search space a kernel gets."""
    sch = tvm.s_tir.Schedule(mod)
    for gv, func in mod.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        sch.work_on(gv.name_hint)
        for block in _blocks_under(sch, sch.get_sblock("root")):
            if get_auto_tensorize_mapping_info(sch, block, intrin.description) is not None:
                return sch.get(block).name_hint
    return None


def _blocks_under(sch: tvm.s_tir.Schedule, root: tvm.s_tir.SBlockRV) -> Iterator[tvm.s_tir.SBlockRV]:
    """Every block nested in `root`, at any depth."""
    blocks = list(sch.get_child_blocks(root))
    while blocks:
        block = blocks.pop()
        yield block
        blocks.extend(sch.get_child_blocks(block))


class PackingPlan(NamedTuple):
    """How a reduction of activation x s8 products into s32 maps onto an intrinsic. N is the
    spatial iterator that indexes the weights but not the activations; K the reduction iterator
    that is the activations' innermost index."""

    data_index: int  # which of the block's reads is the activations
    weight_index: int  # ... and the weights
    n_dim: int  # the weights' dimension N indexes
    k_dim: int  # ... and K
    n_iter: int  # N's position among the block's iterators
    k_iter: int  # ... and K's
    padding: list[int]  # the multiple each block iterator is padded to (lanes for N, 4 for K)


def packing_plan(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, intrin: DotIntrin) -> PackingPlan | None:
    """The plan for `block` if `intrin` computes it, else None."""
    stmt = sch.get(block)
    operands = [
        (i, region) for i, region in enumerate(stmt.reads) if region.source.dtype in ("int8", intrin.activation)
    ]
    if len(stmt.writes) != 1 or stmt.writes[0].source.dtype != "int32" or len(operands) != 2:
        return None
    # conv2d and matmul read the activations first, which tells them apart when both are int8.
    if intrin.activation != "int8" and [region.source.dtype for _, region in operands] == ["int8", intrin.activation]:
        operands.reverse()
    (data_index, data), (weight_index, weight) = operands
    if (data.source.dtype, weight.source.dtype) != (intrin.activation, "int8"):
        return None
    spatial = [iv.var for iv in stmt.iter_vars if iv.iter_type == tvm.tirx.IterVar.DataPar]
    reduce = [iv.var for iv in stmt.iter_vars if iv.iter_type == tvm.tirx.IterVar.CommReduce]

    def vars_of(region):
        return [r.min if isinstance(r.min, tvm.tirx.Var) else None for r in region.region]

    weight_vars, data_vars = vars_of(weight), vars_of(data)
    n = [v for v in spatial if any(v.same_as(w) for w in weight_vars) and not any(v.same_as(d) for d in data_vars)]
    k = data_vars[-1]
    if len(n) != 1 or k is None or not any(k.same_as(r) for r in reduce) or not any(k.same_as(w) for w in weight_vars):
        return None
    n_dim = next(i for i, w in enumerate(weight_vars) if w is not None and w.same_as(n[0]))
    k_dim = next(i for i, w in enumerate(weight_vars) if w is not None and w.same_as(k))
    n_iter = next(i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(n[0]))
    k_iter = next(i for i, iv in enumerate(stmt.iter_vars) if iv.var.same_as(k))
    padding = [intrin.lanes if i == n_iter else REDUCE if i == k_iter else 1 for i in range(len(stmt.iter_vars))]
    return PackingPlan(data_index, weight_index, n_dim, k_dim, n_iter, k_iter, padding)


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


def _packed_index(n_dim: int, k_dim: int, lanes: int):
    """Weight indices -> [N/lanes, other dims, K/4, lanes, 4]: each lanes x 4 tile the intrinsic
    loads is contiguous."""

    def index(*dims):
        rest = [d for i, d in enumerate(dims) if i not in (n_dim, k_dim)]
        n, k = dims[n_dim], dims[k_dim]
        return [n // lanes, *rest, k // REDUCE, n % lanes, k % REDUCE]

    return index


def _pad(sch: tvm.s_tir.Schedule, block: tvm.s_tir.SBlockRV, plan: PackingPlan) -> None:
    """Pad the block's iterators to `plan.padding`. pad_einsum takes only blocks whose buffers
    are indexed by plain iterators, which a convolution's activations (y + ky) are not: they
    are then read through a reindexed copy while padding, and the copy is inlined again."""
    try:
        sch.pad_einsum(block, plan.padding)
    except tvm.s_tir.ScheduleError:
        reindexed = sch.reindex(block, ("read", plan.data_index))
        sch.pad_einsum(block, plan.padding)
        sch.compute_inline(reindexed)


def pack_weights_for_intrin(
    sch: tvm.s_tir.Schedule, name: str, plan: PackingPlan, intrin: DotIntrin
) -> tvm.s_tir.Schedule | None:
    """A copy of `sch` in which block `name` (a reduction the intrinsic computes, as `plan`
    says) has N and K padded to the intrinsic's lanes x 4 where needed and reads its weights
    packed, or None when the block cannot be prepared so. Unpadded weights are packed by a copy
    marked as layout-rewrite preprocessing, which the compiler folds into the constant weights;
    padded ones are packed with their padding by a block that tuning measures in the kernel
    (MetaSchedule's builder can take plain copies only out of it) and that the compiler folds
    too (tvmq.build.int8_schedule.fold_padded_weight_packing)."""
    prepared = sch.copy()
    block = prepared.get_sblock(name)
    try:
        extents = [int(iv.dom.extent) for iv in prepared.get(block).iter_vars]
        if any(e % p for e, p in zip(extents, plan.padding)):
            _pad(prepared, block, plan)
        weights = prepared.get(block).reads[plan.weight_index].source
        producers = [p for p in prepared.get_producers(block) if prepared.get(p).writes[0].source.same_as(weights)]
        packer = producers[0] if producers else prepared.cache_read(block, plan.weight_index, "global")
        packed_index = _packed_index(plan.n_dim, plan.k_dim, intrin.lanes)
        prepared.transform_layout(block, ("read", plan.weight_index), packed_index)
    except tvm.s_tir.ScheduleError:
        return None
    if not producers:  # a plain copy of the weights: folded into them at compile time
        prepared.annotate(packer, "meta_schedule.layout_rewrite_preproc", True)
    prepared.annotate(packer, *WEIGHT_PACKER)
    return prepared


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
                "meta_schedule.auto_tensorize" in sch.get(block).annotations for block in _blocks_under(sch, root)
            ):
                sch.unannotate(root, "meta_schedule.vectorize")
        return True

    def clone(self) -> ms.postproc.Postproc:
        return ScalarLoopsAroundIntrin()
