"""Lowering: the graph passes that shape a Relax module (float or integer) for the kernels of
one target, run before TVM's build pipeline (tvmq.codegen.pipeline).

On CPUs, convolutions run channels-last (NHWC data, HWIO weights): the innermost loop then
walks contiguous channels, which vectorizes and splits across cores (NCHW kernels barely use a
second core). The weights are transposed once at compile time; the layout changes only at the
model's edges.
"""

from __future__ import annotations

import re

import numpy as np
import tvm
from tvm import relax, topi
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from tvmq.ir import PatternRewrite, constant_value, is_constant, op_name, with_main
from tvmq.target import TargetPreset, int8_dot_isa

# Convolutions run channels-last; transposed ones stay channels-first, the only layout TVM
# legalizes them in. Pooling and elementwise operators follow their input's layout.
CPU_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


@relax.transform.function_pass(opt_level=0, name="tvmq.ClipAsMinMax")
class ClipAsMinMax(PatternRewrite):
    """Rewrite clip(x, lo, hi) (ReLU6, integer saturation) as minimum(maximum(x, lo), hi).
    Relax's layout conversion knows no clip and would transpose back to NCHW around every one;
    the elementwise pair passes any layout through and fuses the same."""

    def __init__(self):
        self.data = wildcard()
        self.pattern = is_op("relax.clip")(self.data, wildcard(), wildcard())

    def rewrite(self, call, matches):
        low, high = (relax.const(bound.value, call.ty.dtype) for bound in call.args[1:])
        return relax.op.minimum(relax.op.maximum(matches[self.data], low), high)


@relax.transform.function_pass(opt_level=0, name="tvmq.FoldPadIntoConv")
class FoldPadIntoConv(PatternRewrite):
    """Fold an explicit zero Pad of a float convolution's height and width into the
    convolution's own padding, in any layout, also where the layout change has put it between
    a transpose and its inverse (it converts Pad only in the model's own layout). Exporters
    write "same" padding as a separate Pad, which as kernels of its own (transpose, pad,
    transpose) costs a pass over memory. Integer pads, which pad with the zero point, are left
    alone."""

    def __init__(self):
        self.data = wildcard()
        self.direct = is_op("relax.nn.pad")(self.data)
        self.inner = is_op("relax.permute_dims")(self.data)
        self.between = is_op("relax.nn.pad")(self.inner)
        self.outer = is_op("relax.permute_dims")(self.between)
        self.convs = [is_op("relax.nn.conv2d")(padded, wildcard()) for padded in (self.outer, self.direct)]

    def transform_function(self, func, _mod, _ctx):
        for conv in self.convs:
            func = rewrite_call(conv, self.rewrite, func)
        return func

    def rewrite(self, expr, matches):
        call = matches[self.convs[0]] if self.convs[0] in matches else matches[self.convs[1]]
        pad = matches[self.between] if self.outer in matches else matches[self.direct]
        widths = [int(w) for w in pad.attrs.pad_width]
        if self.outer in matches:
            first, second = ([int(a) for a in matches[t].attrs.axes] for t in (self.inner, self.outer))
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
            matches[self.data],
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


def _static_shape(call: relax.Call) -> list[int]:
    return [int(d) for d in call.ty.shape]


# Operators on constants that numpy computes exactly as TVM's kernels do (layout and shape
# changes; IEEE-rounded float arithmetic), by operator: (arguments that must be constants,
# the numpy computation of the call from their values).
_NUMPY_FOLDS = {
    "relax.permute_dims": (
        1,
        lambda call, x: x.transpose(None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]),
    ),
    "relax.expand_dims": (1, lambda call, x: x.reshape(_static_shape(call))),
    "relax.squeeze": (1, lambda call, x: x.reshape(_static_shape(call))),
    "relax.reshape": (1, lambda call, x: x.reshape(_static_shape(call))),
    "relax.broadcast_to": (1, lambda call, x: np.broadcast_to(x, _static_shape(call))),
    "relax.add": (2, lambda call, x, y: x + y),
    "relax.subtract": (2, lambda call, x, y: x - y),
    "relax.multiply": (2, lambda call, x, y: x * y),
    "relax.divide": (2, lambda call, x, y: x / y),
    "relax.sqrt": (1, lambda call, x: np.sqrt(x)),
}


@relax.expr_functor.mutator
class _FoldWithNumpy(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        fold = _NUMPY_FOLDS.get(op_name(call))
        if fold is None or not isinstance(call.ty, relax.TensorType) or call.ty.shape is None:
            return call
        count, compute = fold
        operands = [self._constant(a) for a in call.args[:count]]
        if None in operands or not all(isinstance(d, tvm.tirx.IntImm) for d in call.ty.shape):
            return call
        values = [constant_value(a) for a in operands]
        dtype = str(call.ty.dtype)
        if count == 2 and not (dtype.startswith("float") and values[0].dtype == values[1].dtype == dtype):
            return call  # integer division rounds, and mixed dtypes promote, unlike numpy's
        result = np.ascontiguousarray(compute(call, *values))
        if result.dtype != dtype or list(result.shape) != _static_shape(call):
            return call
        return relax.const(result, dtype)

    def _constant(self, expr: relax.Expr):
        """The constant `expr` is, directly or bound to a variable, else None."""
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        return expr if expr is not None and is_constant(expr) else None


@relax.transform.function_pass(opt_level=0, name="tvmq.FoldConstantsWithNumpy")
class FoldConstantsWithNumpy:
    """Evaluate layout and shape changes and float arithmetic on constants with numpy (the
    weights the layout change transposes, batch-norm statistics, constant-filled weights):
    FoldConstant would build and run a TVM kernel for each distinct one, tens of ms each."""

    def transform_function(self, func: relax.Function, mod: tvm.IRModule, _ctx) -> relax.Function:
        return _FoldWithNumpy(mod).visit_expr(func)


# float32 functions that compile to a C library call per element, and TOPI's approximations of
# them, which vectorize with the kernel around them: erf within 4e-7 of erf, exp within 1.1e-6
# relative to exp on softmax's inputs (x - max <= 0), tanh within 4e-7.
POLYNOMIALS = {
    "relax.erf": lambda call: (topi.fast_erf, call.args[0]),
    "relax.exp": lambda call: (topi.fast_exp, call.args[0]),
    "relax.tanh": lambda call: (topi.fast_tanh, call.args[0]),
    "relax.nn.softmax": lambda call: (topi.nn.fast_softmax, call.args[0], int(call.attrs.axis)),
}


@relax.expr_functor.mutator
class _TranscendentalsAsPolynomials(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name in POLYNOMIALS and str(call.ty.dtype) == "float32":
            return self.builder_.call_te(*POLYNOMIALS[call.op.name](call))
        return call


@tvm.transform.module_pass(opt_level=0, name="tvmq.TranscendentalsAsPolynomials")
def transcendentals_as_polynomials(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Compute float32 erf (GELU's), exp, tanh and softmax with TOPI's approximations
    (POLYNOMIALS) instead of a C library call per element: they vectorize, where the library
    calls left GELU, then softmax, the slowest parts of a transformer layer."""
    mutator = _TranscendentalsAsPolynomials(mod)
    for global_var, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(global_var, mutator.visit_expr(func))
    return mutator.builder_.get()


@relax.expr_functor.mutator
class _CIdentifiers(relax.PyExprMutator):
    def visit_var_def_(self, var):
        name = re.sub(r"\W", "_", var.name)
        name = name if name[:1].isalpha() or name[:1] == "_" else f"v{name}"
        if name == var.name:
            return var
        renamed = type(var)(name, var.ty)
        self.set_var_remap(var, renamed)
        return renamed

    def visit_dataflow_var_def_(self, var):
        return self.visit_var_def_(var)


@relax.transform.function_pass(opt_level=0, name="tvmq.CIdentifiers")
class CIdentifiers:
    """Name every Relax variable as a C identifier. Kernel parameters are named after the
    variables they come from, and the CUDA codegen writes those names into C source unchanged:
    an ONNX tensor named "/layer1/Relu" would give `float* /layer1/Relu_ptr`, which no CUDA
    compiler accepts. Names do not change what the code computes."""

    def transform_function(self, func: relax.Function, _mod: tvm.IRModule, _ctx) -> relax.Function:
        return _CIdentifiers().visit_expr(func)


ELEMENTWISE = ("relax.add", "relax.subtract", "relax.multiply", "relax.right_shift", "relax.maximum", "relax.minimum")


@relax.transform.function_pass(opt_level=0, name="tvmq.CalibrationConstantsAsParameters")
class CalibrationConstantsAsParameters(PatternRewrite):
    """Turn the scalar constants that calibration chooses into tensor constants: integer
    operands of elementwise operators (requantization shifts, zero points, clamp bounds) get the
    other operand's rank with one element; per-tensor quantize/dequantize parameters become
    vectors along the last axis. A scalar constant is written into its fused kernel as a
    literal, so every calibration would make kernels no tuning log knows; a tensor constant is
    a kernel parameter and the kernel stays the same. Run after the layout change, which does
    not follow rank-changing broadcasts."""

    def __init__(self):
        self.operand, self.scalar, self.scale, self.zero_point = wildcard(), is_const(), is_const(), is_const()
        elementwise = [is_op(name)(self.operand, self.scalar) for name in ELEMENTWISE]
        conversions = [
            is_op(name)(self.operand, self.scale, self.zero_point) for name in ("relax.quantize", "relax.dequantize")
        ]
        self.pattern = elementwise[0]
        for other in elementwise[1:] + conversions:
            self.pattern |= other

    def rewrite(self, call, matches):
        shape = [int(n) for n in matches[self.operand].ty.shape]
        if not shape:
            return call
        if self.scale in matches:
            values = [constant_value(matches[p]) for p in (self.scale, self.zero_point)]
            if any(v.ndim != 0 for v in values):
                return call  # per-channel parameters are tensors already
            vectors = [relax.const(np.full(shape[-1], v), str(v.dtype)) for v in values]
            convert = relax.op.quantize if call.op.name == "relax.quantize" else relax.op.dequantize
            return convert(call.args[0], *vectors, axis=len(shape) - 1, out_dtype=call.attrs.out_dtype)
        value = constant_value(matches[self.scalar])
        if value.ndim != 0 or value.dtype.kind not in "iu":
            return call
        return relax.Call(
            call.op, [call.args[0], relax.const(value.reshape((1,) * len(shape)), str(value.dtype))], call.attrs
        )


@relax.transform.function_pass(opt_level=0, name="tvmq.PadInt8ConvChannels")
class PadInt8ConvChannels(PatternRewrite):
    """Give every int8 convolution (NCHW, OIHW constant weights, one group) a multiple of
    `multiple` input channels, padding with channels of zero weights: tvmq's int8 dot-product
    intrinsics sum 4 channels at a time, and an image stem with 3 channels would otherwise stay
    a scalar loop. A zero weight adds nothing, whatever the padded activation holds, so the
    integer results do not change."""

    def __init__(self, multiple: int = 4):
        self.multiple = multiple
        self.data, self.weight = wildcard(), is_const()
        self.pattern = is_op("relax.nn.conv2d")(self.data, self.weight)

    def rewrite(self, expr, matches):
        call, w = matches[self.pattern], constant_value(matches[self.weight])
        short = -w.shape[1] % self.multiple
        attrs = call.attrs
        if (
            not short
            or w.dtype != np.int8
            or attrs.groups != 1
            or (attrs.data_layout, attrs.kernel_layout) != ("NCHW", "OIHW")
        ):
            return expr
        padded_data = relax.op.nn.pad(matches[self.data], [0, 0, 0, short, 0, 0, 0, 0])
        padded_weight = relax.const(np.pad(w, [(0, 0), (0, short), (0, 0), (0, 0)]))
        return relax.Call(call.op, [padded_data, padded_weight], attrs, call.ty_args)


@relax.transform.function_pass(opt_level=0, name="tvmq.ChannelShuffleAsTake")
class ChannelShuffleAsTake(PatternRewrite):
    """ShuffleNet's channel shuffle, reshape [N, C, H, W] -> [N, g, C/g, H, W], swap axes 1 and
    2, reshape back, as one gather of the channels in their shuffled order: the layout pass
    fails on the 5-D transpose between the reshapes."""

    def __init__(self):
        self.data = wildcard()
        self.grouped = is_op("relax.reshape")(self.data, wildcard())
        self.swapped = is_op("relax.permute_dims")(self.grouped)
        self.pattern = is_op("relax.reshape")(self.swapped, wildcard())

    def rewrite(self, call, matches):
        data, swapped = matches[self.data], matches[self.swapped]
        shape = [int(n) for n in data.ty.shape]
        grouped = [int(n) for n in matches[self.grouped].ty.shape]
        if (
            len(shape) != 4
            or [int(n) for n in call.ty.shape] != shape
            or len(grouped) != 5
            or grouped[:1] + [grouped[1] * grouped[2]] + grouped[3:] != shape
            or [int(a) for a in swapped.attrs.axes or []] != [0, 2, 1, 3, 4]
        ):
            return call
        groups, per_group = grouped[1], grouped[2]
        order = np.array([(j % groups) * per_group + j // groups for j in range(shape[1])], "int64")
        return relax.op.take(data, relax.const(order), axis=1)


# Grouped convolutions with at most this many groups are computed as one convolution with
# block-diagonal weights. The default schedules vectorize over output channels, which a group's
# input channels do not follow: float grouped convolutions ran TVM's serial loops, int8 ones
# partly so (ShuffleNet: fp32 10x, int8 3x slower). The zeros cost `groups` times the
# multiply-adds, far less than that; beyond this count the cost outgrows the gain.
DENSE_GROUPS_UP_TO = 8


@relax.transform.function_pass(opt_level=0, name="tvmq.GroupedConvAsDense")
class GroupedConvAsDense(PatternRewrite):
    """A float32 or 8-bit integer convolution with 2..DENSE_GROUPS_UP_TO groups (not depthwise)
    and constant weights, in any layout -> the same convolution with groups=1 and its weights
    spread over a block diagonal, zeros elsewhere: the same sums, the zeros adding nothing
    (integer sums exactly)."""

    def __init__(self):
        self.data, self.weights = wildcard(), is_const()
        self.pattern = is_op("relax.nn.conv2d")(self.data, self.weights)

    def rewrite(self, call, matches):
        attrs = matches[self.pattern].attrs  # `call` may be the variable bound to the match
        groups = int(attrs.groups)
        data = matches[self.data]
        channels = int(data.ty.shape[str(attrs.data_layout).index("C")])
        layout = str(attrs.kernel_layout)
        if (
            sorted(layout) != sorted("OIHW")
            or str(data.ty.dtype) not in ("float32", "uint8", "int8")
            or not 1 < groups <= DENSE_GROUPS_UP_TO
            or groups == channels  # depthwise: the default schedules cover it
        ):
            return call
        # Output channels first, input channels second, the window after: OIHW.
        weights = np.transpose(constant_value(matches[self.weights]), [layout.index(a) for a in "OIHW"])
        outputs, per_group = weights.shape[0], weights.shape[1]
        dense = np.zeros((outputs, channels, *weights.shape[2:]), weights.dtype)
        for output in range(outputs):
            group = output // (outputs // groups)
            dense[output, group * per_group : (group + 1) * per_group] = weights[output]
        dense = np.ascontiguousarray(np.transpose(dense, ["OIHW".index(a) for a in layout]))
        return relax.op.nn.conv2d(
            data,
            relax.const(dense),
            strides=attrs.strides,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=1,
            data_layout=attrs.data_layout,
            kernel_layout=attrs.kernel_layout,
            out_layout=attrs.out_layout,
            out_dtype=attrs.out_dtype,
        )


def lower_pipeline(preset: TargetPreset) -> tvm.transform.Pass:
    """The lowering for `preset`: on GPU targets, variables named as C identifiers; clips as
    min/max; int8 convolutions padded to whole groups of
    4 input channels where the target has int8 dot products; on CPU targets channels-last
    (GPU targets keep the model's layout for TVM's GPU schedules), grouped convolutions as dense
    ones (GroupedConvAsDense), pads folded into the convolutions and erf, exp, tanh and softmax approximated by polynomials (POLYNOMIALS); the
    calibration's numbers as kernel parameters."""
    cpu = preset.kind == "llvm"
    passes = [ClipAsMinMax()] if cpu else [CIdentifiers(), ClipAsMinMax()]
    if int8_dot_isa(preset.tvm_target()) is not None:
        passes.append(PadInt8ConvChannels())
    if cpu:
        passes += [
            ChannelShuffleAsTake(),
            relax.transform.ConvertLayout(CPU_LAYOUTS),
            FoldConstantsWithNumpy(),
            relax.transform.FoldConstant(),
            GroupedConvAsDense(),  # after the folds: weights computed in the graph are constants
            FoldPadIntoConv(),
        ]
    passes.append(CalibrationConstantsAsParameters())
    if cpu:
        passes.append(transcendentals_as_polynomials)
    return tvm.transform.Sequential(passes, name="tvmq.Lower")


def lower_for_target(mod: tvm.IRModule, preset: TargetPreset) -> tvm.IRModule:
    """`mod` as code is generated from it for `preset` (see `lower_pipeline`)."""
    return lower_pipeline(preset)(mod)


def outputs_as_computed(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[tuple[int, ...] | None]]:
    """A lowered `mod` whose main returns a tuple, with the outputs that the channels-last
    layout transposes back only to return them returned as computed; and, per output, the axes
    that transpose it back to its declared layout (None where it was not transposed). For
    callers that read the values in any layout (calibration's statistics): each such transpose
    is a pass over a whole activation."""
    mod = relax.transform.ToNonDataflow()(mod)
    func = mod["main"]
    (block,) = func.body.blocks
    values = {binding.var: binding.value for binding in block.bindings}
    fields, axes = [], []
    for field in func.body.body.fields:
        value = values.get(field)
        if op_name(value) == "relax.permute_dims" and value.attrs.axes is not None:
            fields.append(value.args[0])
            axes.append(tuple(int(a) for a in value.attrs.axes))
        else:
            fields.append(field)
            axes.append(None)
    body = relax.SeqExpr([block], relax.Tuple(fields))
    rewritten = relax.Function(
        func.params, body, ret_ty=relax.TupleType([f.ty for f in fields]), is_pure=True, attrs=func.attrs
    )
    mod = relax.transform.ConvertToDataflow()(relax.transform.Normalize()(with_main(mod, rewritten)))
    return relax.transform.DeadCodeElimination(["main"])(mod), axes
