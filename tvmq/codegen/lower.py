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
from tvm import relax, topi
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.ir import constant_value, with_main
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


def fold_pads_into_convs(mod: tvm.IRModule) -> tvm.IRModule:
    """Fold an explicit zero Pad of a float convolution's height and width into the
    convolution's own padding, also where the layout change has put it between a transpose and
    its inverse (it converts Pad only in the model's own layout). EfficientNet-Lite0 has one
    before each stride-2 convolution; as kernels of their own (transpose, pad, transpose) they
    took 17 of its 39 ms a run (fp32, one core, default schedules). Integer pads, which pad
    with the zero point, are left alone."""
    data = wildcard()
    direct = is_op("relax.nn.pad")(data)
    inner = is_op("relax.permute_dims")(data)
    between = is_op("relax.nn.pad")(inner)
    outer = is_op("relax.permute_dims")(between)

    convs = [is_op("relax.nn.conv2d")(padded, wildcard()) for padded in (outer, direct)]

    def rewrite(expr: relax.Expr, matches) -> relax.Expr:
        call = matches[convs[0]] if convs[0] in matches else matches[convs[1]]
        pad = matches[between] if outer in matches else matches[direct]
        widths = [int(w) for w in pad.attrs.pad_width]
        if outer in matches:
            first, second = ([int(a) for a in matches[t].attrs.axes] for t in (inner, outer))
            if [first[axis] for axis in second] != list(range(len(first))):
                return expr
            widths = [
                w for axis in range(len(first)) for w in widths[2 * first.index(axis) : 2 * first.index(axis) + 2]
            ]
        attrs = call.attrs
        height, width = attrs.data_layout.index("H"), attrs.data_layout.index("W")
        if (
            pad.attrs.pad_mode != "constant"
            or float(pad.attrs.pad_value) != 0
            or "float" not in str(pad.ty.dtype)
            or any(
                widths[2 * axis : 2 * axis + 2] != [0, 0]
                for axis in range(len(widths) // 2)
                if axis not in (height, width)
            )
        ):
            return expr
        top, bottom, left, right = widths[2 * height : 2 * height + 2] + widths[2 * width : 2 * width + 2]
        padding = [int(p) for p in attrs.padding]
        return relax.op.nn.conv2d(
            matches[data],
            call.args[1],
            strides=attrs.strides,
            padding=[padding[0] + top, padding[1] + left, padding[2] + bottom, padding[3] + right],
            dilation=attrs.dilation,
            groups=attrs.groups,
            data_layout=attrs.data_layout,
            kernel_layout=attrs.kernel_layout,
            out_layout=attrs.out_layout,
            out_dtype=attrs.out_dtype,
        )

    for conv in convs:
        mod = with_main(mod, rewrite_call(conv, rewrite, mod["main"]))
    return mod


@relax.expr_functor.mutator
class _ErfAsPolynomial(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.erf" and str(call.ty.dtype) == "float32":
            return self.builder_.call_te(topi.fast_erf, call.args[0])
        return call


def erf_as_polynomial(mod: tvm.IRModule) -> tvm.IRModule:
    """Compute float32 erf (GELU's) with TOPI's rational approximation (within 4e-7 of erf)
    instead of a call to the C library's erff per element: it vectorizes with the kernel. The
    GELU after MiniLM-L6's first feed-forward product took 60% of the int8 model's time (24 of
    40 ms, one core); with the approximation 3.5 ms."""
    mutator = _ErfAsPolynomial(mod)
    for global_var, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(global_var, mutator.visit_expr(func))
    return mutator.builder_.get()


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


def lower_for_target(mod: tvm.IRModule, preset: TargetPreset) -> tvm.IRModule:
    """`mod` (float or integer) as code is generated from it for `preset`: channels-last on CPU
    targets (GPU targets keep the model's layout for TVM's GPU schedules), int8 convolutions
    padded to whole groups of 4 input channels where the target has int8 dot products, with the
    calibration's numbers as kernel parameters."""
    mod = clip_as_min_max(mod)
    if int8_dot_isa(preset.tvm_target()) is not None:
        mod = pad_int8_conv_channels(mod)
    if preset.kind == "llvm":
        mod = tvm.ir.transform.Sequential(
            [relax.transform.ConvertLayout(CHANNELS_LAST), relax.transform.FoldConstant()]
        )(mod)
        mod = fold_pads_into_convs(mod)
    mod = calibration_constants_as_parameters(mod)
    return erf_as_polynomial(mod) if preset.kind == "llvm" else mod
