"""Int8 dot-product tensor intrinsics on x86 and ARM, which tvmq's int8 kernels are built on.

TVM 0.27 ships no usable x86 int8 intrinsic (its VNNI one is rejected by LLVM). Each intrinsic
here adds four activation x int8 weight products into each of its int32 lanes, with the best
instructions the target has (tvmq.target.int8_dot_isa):
  avx512vnni  x86, u8 x s8: vpdpbusd, 16 lanes, products summed straight into int32;
  avx512bw    x86, u8 x s8: vpmaddubsw + vpmaddwd on zmm, 16 lanes;
  avx2        x86, u8 x s8: vpmaddubsw + vpmaddwd on ymm, 8 lanes;
  dotprod     ARM, s8 x s8: sdot, 4 lanes;
  neon        ARM, s8 x s8: smull + saddlp + addp, 4 lanes (Cortex-A72 has no sdot).
vpmaddubsw sums pairs of u8 x s8 products into int16, saturating when a pair exceeds 32767
(255 x 127 twice): results are exact when weights stay within 7 bits (QConfig.reduce_range).
The others are exact for any int8 weights. Intrinsic names appear in tuning records: they
must not change.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import tvm
from tvm.s_tir import TensorIntrin
from tvm.s_tir import meta_schedule as ms
from tvm.script import tirx as T

from tvmq.ir import constant_value, is_constant
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


def _smull_dot_4x4() -> tvm.tirx.PrimFunc:
    """Without sdot: smull + saddlp + addp on 4 lanes."""

    @T.prim_func(s_tir=True)
    def implementation(
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
            a_twice = T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 2), dtype="int8x8"
            )
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

    return implementation


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


def _parsed_on_a_short_stack(build):
    """`build()` run in a thread of its own. TVMScript's @T.prim_func reads the source of every
    frame on the caller's stack; when this module is imported from deep inside other imports
    (as a compile does), the importer's frozen frames make that seconds."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(build).result()


_DESCRIPTIONS = _parsed_on_a_short_stack(
    lambda: {(lanes, a): _dot_description(lanes, a) for lanes, a in ((16, "uint8"), (8, "uint8"), (4, "int8"))}
)
INTRINSICS = _parsed_on_a_short_stack(
    lambda: {
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
            DotIntrin("tvmq_neon_s8s8i32_dot_4x4", "neon", 4, "int8", _smull_dot_4x4()),
        )
    }
)


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
