"""The module code is generated from, for one target: tuning and building both start here, so
that the kernels tuned are exactly the kernels built.

On CPUs, convolutions run channels-last (NHWC data, HWIO weights): the innermost loop then
walks contiguous channels, which vectorizes and splits across cores. Measured here with tuned
3x3 convolutions, channels-last reaches 156 GFLOP/s on two cores where NCHW stays at 35. The
weights are transposed once at compile time; the layout changes only at the model's edges.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.quantize import for_codegen
from tvmq.quantize.graph import constant_value, with_main
from tvmq.target import TargetPreset, int8_dot_isa

# Pooling and elementwise operators follow their input's layout.
CHANNELS_LAST = {"relax.nn.conv2d": ["NHWC", "HWIO"]}


def clip_as_min_max(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite clip(x, lo, hi) (ReLU6, integer saturation) as minimum(maximum(x, lo), hi).
    Relax's layout conversion knows no clip and would transpose back to NCHW around every one;
    the elementwise pair passes any layout through and fuses the same."""
    data = wildcard()
    clip = is_op("relax.clip")(data, wildcard(), wildcard())

    def rewrite(call: relax.Call, matches) -> relax.Expr:
        low, high = (relax.const(bound.value, call.ty.dtype) for bound in call.args[1:])
        return relax.op.minimum(relax.op.maximum(matches[data], low), high)

    return with_main(mod, rewrite_call(clip, rewrite, mod["main"]))


ELEMENTWISE = ("relax.add", "relax.subtract", "relax.multiply", "relax.right_shift", "relax.maximum", "relax.minimum")


def calibration_constants_as_parameters(mod: tvm.IRModule) -> tvm.IRModule:
    """Turn the scalar constants that calibration chooses into tensor constants: integer
    operands of elementwise operators (requantization shifts, zero points, clamp bounds) get the
    other operand's rank with one element; per-tensor quantize/dequantize parameters become
    vectors along the last axis. A scalar constant is written into its fused kernel as a
    literal, so every calibration would make kernels no tuning log knows; a tensor constant is
    a kernel parameter and the kernel stays the same. Run after the layout change, which does
    not follow rank-changing broadcasts."""
    operand, scalar, scale, zero_point = wildcard(), is_const(), is_const(), is_const()
    elementwise = [is_op(name)(operand, scalar) for name in ELEMENTWISE]
    conversions = [is_op(name)(operand, scale, zero_point) for name in ("relax.quantize", "relax.dequantize")]
    pattern = elementwise[0]
    for other in elementwise[1:] + conversions:
        pattern |= other

    def rewrite(call: relax.Call, matches) -> relax.Expr:
        shape = [int(n) for n in matches[operand].ty.shape]
        if not shape:
            return call
        if scale in matches:
            values = [constant_value(matches[p]) for p in (scale, zero_point)]
            if any(v.ndim != 0 for v in values):
                return call  # per-channel parameters are tensors already
            vectors = [relax.const(np.full(shape[-1], v), str(v.dtype)) for v in values]
            convert = relax.op.quantize if call.op.name == "relax.quantize" else relax.op.dequantize
            return convert(call.args[0], *vectors, axis=len(shape) - 1, out_dtype=call.attrs.out_dtype)
        value = constant_value(matches[scalar])
        if value.ndim != 0 or value.dtype.kind not in "iu":
            return call
        return relax.Call(
            call.op, [call.args[0], relax.const(value.reshape((1,) * len(shape)), str(value.dtype))], call.attrs
        )

    return with_main(mod, rewrite_call(pattern, rewrite, mod["main"]))


def pad_int8_conv_channels(mod: tvm.IRModule, multiple: int = 4) -> tvm.IRModule:
    """Give every int8 convolution (NCHW, OIHW constant weights, one group) a multiple of
    `multiple` input channels, padding with channels of zero weights: tvmq's int8 dot-product
    intrinsics sum 4 channels at a time, and an image stem with 3 channels would otherwise stay
    a scalar loop (ResNet-18's 7x7 stem was its slowest int8 kernel). A zero weight adds
    nothing, whatever the padded activation holds, so the integer results do not change."""
    data, weight = wildcard(), is_const()
    conv = is_op("relax.nn.conv2d")(data, weight)

    def rewrite(expr: relax.Expr, matches) -> relax.Expr:
        call, w = matches[conv], constant_value(matches[weight])
        short = -w.shape[1] % multiple
        attrs = call.attrs
        if (
            not short
            or w.dtype != np.int8
            or attrs.groups != 1
            or (attrs.data_layout, attrs.kernel_layout) != ("NCHW", "OIHW")
        ):
            return expr
        padded_data = relax.op.nn.pad(matches[data], [0, 0, 0, short, 0, 0, 0, 0])
        padded_weight = relax.const(np.pad(w, [(0, 0), (0, short), (0, 0), (0, 0)]))
        return relax.Call(call.op, [padded_data, padded_weight], attrs, call.ty_args)

    return with_main(mod, rewrite_call(conv, rewrite, mod["main"]))


def codegen_module(mod: tvm.IRModule, preset: TargetPreset, simulate: bool = False) -> tvm.IRModule:
    """`mod` realized into integer operators (see tvmq.quantize.for_codegen), channels-last on
    CPU targets (GPU targets keep the model's layout for TVM's GPU schedules), int8
    convolutions padded to whole groups of 4 input channels where the target has int8 dot
    products, with the calibration's numbers as kernel parameters."""
    mod = clip_as_min_max(for_codegen(mod, simulate))
    if int8_dot_isa(preset.tvm_target()) is not None:
        mod = pad_int8_conv_channels(mod)
    if preset.kind == "llvm":
        mod = tvm.ir.transform.Sequential(
            [relax.transform.ConvertLayout(CHANNELS_LAST), relax.transform.FoldConstant()]
        )(mod)
    return calibration_constants_as_parameters(mod)
