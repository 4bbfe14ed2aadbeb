"""Small ONNX models built in code for the tests: each a few nodes with a known purpose."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _rng(seed):
    return np.random.default_rng(seed)


def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET) -> onnx.ModelProto:
    """A checked model from nodes, (name, elem_type, dims) inputs and outputs, and arrays."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(name, elem, dims) for name, elem, dims in inputs],
        [helper.make_tensor_value_info(name, elem, dims) for name, elem, dims in outputs],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def conv_net(batch="N") -> onnx.ModelProto:
    """Conv -> BatchNorm -> Relu -> MaxPool -> Conv (grouped) -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm: the shape of a small image classifier."""
    rng = _rng(0)
    weights = {
        "w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "beta": rng.normal(0, 0.1, 8).astype(np.float32),
        "mean": rng.normal(0, 0.1, 8).astype(np.float32),
        "var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "w2": rng.normal(0, 0.3, (16, 4, 3, 3)).astype(np.float32),
        "fc_w": rng.normal(0, 0.3, (10, 16)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, 10).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=2, name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
    ]
    return make_model(
        nodes,
        [("image", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [("logits", TensorProto.FLOAT, [batch, 10])],
        weights.items(),
    )


def mlp() -> onnx.ModelProto:
    """MatMul + Add + Relu twice, then Softmax: a two-layer perceptron with fixed batch 4."""
    rng = _rng(1)
    weights = {
        "w1": rng.normal(0, 0.2, (32, 64)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 64).astype(np.float32),
        "w2": rng.normal(0, 0.2, (64, 10)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 10).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["scores"], name="bias2"),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1, name="softmax"),
    ]
    return make_model(
        nodes, [("x", TensorProto.FLOAT, [4, 32])], [("probs", TensorProto.FLOAT, [4, 10])], weights.items()
    )


def transformer_block(seq=8, dim=16, heads=2) -> onnx.ModelProto:
    """One pre-norm encoder block: LayerNormalization, multi-head self-attention (MatMul,
    Reshape/Transpose into heads, scaled Softmax), residual Add, LayerNorm, MLP with the erf
    form of GELU, residual Add. Batch is dynamic."""
    rng = _rng(2)
    head_dim = dim // heads
    weights = {
        "ln1_g": rng.uniform(0.8, 1.2, dim).astype(np.float32),
        "ln1_b": rng.normal(0, 0.1, dim).astype(np.float32),
        "wq": rng.normal(0, 0.25, (dim, dim)).astype(np.float32),
        "wk": rng.normal(0, 0.25, (dim, dim)).astype(np.float32),
        "wv": rng.normal(0, 0.25, (dim, dim)).astype(np.float32),
        "wo": rng.normal(0, 0.25, (dim, dim)).astype(np.float32),
        "ln2_g": rng.uniform(0.8, 1.2, dim).astype(np.float32),
        "ln2_b": rng.normal(0, 0.1, dim).astype(np.float32),
        "w_up": rng.normal(0, 0.25, (dim, 4 * dim)).astype(np.float32),
        "w_down": rng.normal(0, 0.25, (4 * dim, dim)).astype(np.float32),
        "heads_shape": np.array([0, seq, heads, head_dim], np.int64),
        "merge_shape": np.array([0, seq, dim], np.int64),
        "scale": np.array(1 / np.sqrt(head_dim), np.float32),
        "sqrt2": np.array(np.sqrt(2), np.float32),
        "one": np.array(1, np.float32),
        "half": np.array(0.5, np.float32),
    }

    def split_heads(name):
        return [
            helper.make_node("MatMul", ["n1", f"w{name}"], [f"{name}_proj"], name=f"{name}_proj"),
            helper.make_node("Reshape", [f"{name}_proj", "heads_shape"], [f"{name}_4d"], name=f"{name}_split"),
            helper.make_node("Transpose", [f"{name}_4d"], [f"{name}_h"], perm=[0, 2, 1, 3], name=f"{name}_heads"),
        ]

    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln1_g", "ln1_b"], ["n1"], axis=-1, name="ln1"),
        *split_heads("q"),
        *split_heads("k"),
        *split_heads("v"),
        helper.make_node("Transpose", ["k_h"], ["k_t"], perm=[0, 1, 3, 2], name="k_t"),
        helper.make_node("MatMul", ["q_h", "k_t"], ["qk"], name="qk"),
        helper.make_node("Mul", ["qk", "scale"], ["qk_scaled"], name="qk_scale"),
        helper.make_node("Softmax", ["qk_scaled"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "v_h"], ["ctx_h"], name="ctx"),
        helper.make_node("Transpose", ["ctx_h"], ["ctx_t"], perm=[0, 2, 1, 3], name="ctx_t"),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["ctx"], name="ctx_merge"),
        helper.make_node("MatMul", ["ctx", "wo"], ["attn_out"], name="o_proj"),
        helper.make_node("Add", ["x", "attn_out"], ["res1"], name="residual1"),
        helper.make_node("LayerNormalization", ["res1", "ln2_g", "ln2_b"], ["n2"], axis=-1, name="ln2"),
        helper.make_node("MatMul", ["n2", "w_up"], ["up"], name="mlp_up"),
        # GELU(x) = 0.5 x (1 + erf(x / sqrt 2))
        helper.make_node("Div", ["up", "sqrt2"], ["up_s"], name="gelu_div"),
        helper.make_node("Erf", ["up_s"], ["erf"], name="gelu_erf"),
        helper.make_node("Add", ["erf", "one"], ["erf1"], name="gelu_add"),
        helper.make_node("Mul", ["up", "erf1"], ["g1"], name="gelu_mul"),
        helper.make_node("Mul", ["g1", "half"], ["gelu"], name="gelu_half"),
        helper.make_node("MatMul", ["gelu", "w_down"], ["down"], name="mlp_down"),
        helper.make_node("Add", ["res1", "down"], ["y"], name="residual2"),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", seq, dim])],
        [("y", TensorProto.FLOAT, ["batch", seq, dim])],
        weights.items(),
    )


def with_unsupported_ops() -> onnx.ModelProto:
    """Relu plus three nodes of two op types TVM's importer lacks (ConvInteger, QLinearConv):
    all must be reported at once."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Cast", ["r"], ["xq"], to=TensorProto.UINT8, name="to_u8"),
        helper.make_node("ConvInteger", ["xq", "w"], ["c1"], name="conv_int_a"),
        helper.make_node("ConvInteger", ["xq", "w"], ["c2"], name="conv_int_b"),
        helper.make_node("QLinearConv", ["xq", "s", "zp", "w", "s", "wzp", "s", "zp"], ["q"], name="qlinear"),
    ]
    initializers = [
        ("w", np.ones((1, 1, 1, 1), np.int8)),
        ("s", np.array(1.0, np.float32)),
        ("zp", np.array(0, np.uint8)),
        ("wzp", np.array(0, np.int8)),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [
            ("c1", TensorProto.INT32, [1, 1, 4, 4]),
            ("c2", TensorProto.INT32, [1, 1, 4, 4]),
            ("q", TensorProto.UINT8, [1, 1, 4, 4]),
        ],
        initializers,
    )


# Graphs that compute shapes at run time, as legacy torch.onnx, Paddle and TF exporters write
# them. TVM's importer rejects each even with static input shapes; tvmq folds them first.


def _i64(*values):
    return np.array(values, np.int64)


def flatten_by_computed_shape() -> onnx.ModelProto:
    """Reshape x [N, 3, 8, 8] to [N, 192] with the batch size taken from Shape and passed
    through a float Cast and back (TVM: "Reshape requires the input new shape to be Shape")."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Cast", ["shape_f"], ["shape_i"], to=TensorProto.INT64, name="to_int"),
        helper.make_node("Slice", ["shape_i", "zero", "one"], ["batch"], name="batch"),
        helper.make_node("Concat", ["batch", "minus_one"], ["new_shape"], axis=0, name="new_shape"),
        helper.make_node("Reshape", ["x", "new_shape"], ["flat"], name="flatten"),
        helper.make_node("Relu", ["flat"], ["y"], name="relu"),
    ]
    initializers = [("zero", _i64(0)), ("one", _i64(1)), ("minus_one", _i64(-1))]
    return make_model(
        nodes, [("x", TensorProto.FLOAT, ["N", 3, 8, 8])], [("y", TensorProto.FLOAT, ["N", 192])], initializers
    )


def same_padding_conv() -> onnx.ModelProto:
    """TF-style "same" padding computed in the graph before a stride-2 3x3 Conv:
    pad = ceil(in / 2) * 2 - in + 1, split before/after (TVM: "Dynamic pads are not supported")."""
    weight = _rng(3).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"], name="hw"),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT, name="hw_float"),
        helper.make_node("Div", ["hw_f", "stride"], ["out_f"], name="div_stride"),
        helper.make_node("Ceil", ["out_f"], ["out_c"], name="ceil"),
        helper.make_node("Mul", ["out_c", "stride"], ["covered"], name="covered"),
        helper.make_node("Sub", ["covered", "hw_f"], ["rest"], name="rest"),
        helper.make_node("Add", ["rest", "kernel_minus_stride"], ["total_f"], name="total"),
        helper.make_node("Cast", ["total_f"], ["total"], to=TensorProto.INT64, name="total_int"),
        helper.make_node("Div", ["total", "two_scalar"], ["before"], name="before"),
        helper.make_node("Sub", ["total", "before"], ["after"], name="after"),
        helper.make_node("Concat", ["zeros", "before", "zeros", "after"], ["pads"], axis=0, name="pads"),
        helper.make_node("Pad", ["x", "pads"], ["padded"], name="pad"),
        helper.make_node("Conv", ["padded", "w"], ["y"], strides=[2, 2], name="conv"),
    ]
    initializers = [
        ("two", _i64(2)),
        ("four", _i64(4)),
        ("two_scalar", np.array(2, np.int64)),
        ("zeros", _i64(0, 0)),
        ("stride", np.array(2.0, np.float32)),
        ("kernel_minus_stride", np.array(1.0, np.float32)),
        ("w", weight),
    ]
    return make_model(
        nodes, [("x", TensorProto.FLOAT, ["N", 3, 9, 9])], [("y", TensorProto.FLOAT, ["N", 4, 5, 5])], initializers
    )


def softmax_scaled_by_computed_dim() -> onnx.ModelProto:
    """Attention-style Softmax(x / sqrt(d)) with d = Shape(x)[-1] computed in the graph, as
    exporters trace `scores / math.sqrt(q.size(-1))` (TVM: relax.sqrt rejects the shape value)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "last"], ["dim"], axis=0, name="dim"),
        helper.make_node("Cast", ["dim"], ["dim_f"], to=TensorProto.FLOAT, name="dim_float"),
        helper.make_node("Sqrt", ["dim_f"], ["sqrt_dim"], name="sqrt_dim"),
        helper.make_node("Div", ["x", "sqrt_dim"], ["scaled"], name="scale"),
        helper.make_node("Softmax", ["scaled"], ["y"], axis=-1, name="softmax"),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, ["N", "L", "D"])],
        [("y", TensorProto.FLOAT, ["N", "L", "D"])],
        [("last", np.array(-1, np.int64))],
    )


def padded_relu6_convs() -> onnx.ModelProto:
    """EfficientNet-Lite's shapes in miniature: an explicit Pad before a stride-2 Conv, ReLU6
    written as Clip(0, 6), then a 1x1 Conv one of whose output channels has all but zero weights
    (BatchNorm folding leaves such dead channels)."""
    rng = _rng(4)
    w1 = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (3, 4, 1, 1)).astype(np.float32)
    w2[2] *= 1e-9
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["padded"], name="same_pad"),
        helper.make_node("Conv", ["padded", "w1"], ["c1"], strides=[2, 2], name="stem"),
        helper.make_node("Clip", ["c1", "zero", "six"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="project"),
    ]
    initializers = [
        ("pads", _i64(0, 0, 0, 0, 0, 0, 1, 1)),
        ("w1", w1),
        ("w2", w2),
        ("zero", np.array(0.0, np.float32)),
        ("six", np.array(6.0, np.float32)),
    ]
    return make_model(
        nodes, [("x", TensorProto.FLOAT, [1, 3, 9, 9])], [("y", TensorProto.FLOAT, [1, 3, 5, 5])], initializers
    )


def pointwise_relu6_then_padded_conv(channels: int = 8) -> onnx.ModelProto:
    """A MobileNet/EfficientNet block boundary: 1x1 Conv (4 -> `channels`), ReLU6, then the
    explicit "same" Pad (bottom/right only) of the next stride-2 3x3 Conv. Fusion puts conv +
    clip + pad in one kernel, which dlight's GPU Matmul rule cannot schedule (it asserts)."""
    rng = _rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="expand"),
        helper.make_node("Clip", ["c1", "zero", "six"], ["r1"], name="relu6"),
        helper.make_node("Pad", ["r1", "pads"], ["padded"], name="same_pad"),
        helper.make_node("Conv", ["padded", "w2"], ["y"], strides=[2, 2], name="conv3x3"),
    ]
    initializers = [
        ("w1", rng.normal(0, 0.5, (channels, 4, 1, 1)).astype(np.float32)),
        ("b1", rng.normal(0, 0.5, channels).astype(np.float32)),
        ("zero", np.array(0.0, np.float32)),
        ("six", np.array(6.0, np.float32)),
        ("pads", _i64(0, 0, 0, 0, 0, 0, 1, 1)),
        ("w2", rng.normal(0, 0.5, (channels, channels, 3, 3)).astype(np.float32)),
    ]
    outputs = [("y", TensorProto.FLOAT, [1, channels, 4, 4])]
    return make_model(nodes, [("x", TensorProto.FLOAT, [1, 4, 8, 8])], outputs, initializers)


def residual_block(channels: int = 32) -> onnx.ModelProto:
    """ResNet's basic block between two 1x1 Convs: 3x3 Conv, Relu, 3x3 Conv, Add of the block's
    input, Relu. Quantized, the Add joins two integer tensors (convolution outputs), so the
    second 3x3 convolution's kernel also requantizes the skip connection."""
    rng = _rng(6)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem"),
        helper.make_node("Relu", ["c0"], ["block_input"], name="relu0"),
        helper.make_node("Conv", ["block_input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "block_input"], ["sum"], name="residual"),
        helper.make_node("Relu", ["sum"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["y"], name="head"),
    ]
    scale = 1 / np.sqrt(9 * channels)
    pointwise = (channels, channels, 1, 1)
    initializers = [
        ("w0", rng.normal(0, 1 / np.sqrt(channels), pointwise).astype(np.float32)),
        ("w1", rng.normal(0, scale, (channels, channels, 3, 3)).astype(np.float32)),
        ("b1", rng.normal(0, 0.1, channels).astype(np.float32)),
        ("w2", rng.normal(0, scale, (channels, channels, 3, 3)).astype(np.float32)),
        ("b2", rng.normal(0, 0.1, channels).astype(np.float32)),
        ("w3", rng.normal(0, 1 / np.sqrt(channels), pointwise).astype(np.float32)),
    ]
    shape = [1, channels, 6, 6]
    return make_model(nodes, [("x", TensorProto.FLOAT, shape)], [("y", TensorProto.FLOAT, shape)], initializers)


def depthwise_block(channels: int = 32, stride: int = 1) -> onnx.ModelProto:
    """MobileNet's inverted-residual core: 1x1 Conv, Relu, depthwise 3x3 Conv (one group per
    channel), Relu, 1x1 Conv. With stride 2 the depthwise Conv halves 8 x 8 with EfficientNet's
    "same" padding (bottom and right only)."""
    rng = _rng(7)
    pads = [1, 1, 1, 1] if stride == 1 else [0, 0, 1, 1]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="expand"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv", ["r1", "w2", "b2"], ["c2"], pads=pads, strides=[stride] * 2, group=channels, name="depthwise"
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["y"], name="project"),
    ]
    initializers = [
        ("w1", rng.normal(0, 0.5, (channels, 8, 1, 1)).astype(np.float32)),
        ("w2", rng.normal(0, 0.3, (channels, 1, 3, 3)).astype(np.float32)),
        ("b2", rng.normal(0, 0.1, channels).astype(np.float32)),
        ("w3", rng.normal(0, 1 / np.sqrt(channels), (8, channels, 1, 1)).astype(np.float32)),
    ]
    size = 7 if stride == 1 else 8
    inputs = [("x", TensorProto.FLOAT, [1, 8, size, size])]
    outputs = [("y", TensorProto.FLOAT, [1, 8, (size - 1) // stride + 1, (size - 1) // stride + 1])]
    return make_model(nodes, inputs, outputs, initializers)


# The convolution blocks the default kernel schedules are tested on, by test id: a 1x1 then
# an explicit pad and a stride-2 3x3 at 32 channels (two tiles of AVX-512's 16 lanes) and at 24
# (EfficientNet's: not whole tiles), ResNet's basic block, MobileNet's depthwise block, and
# EfficientNet's stride-2 one (padded tile by tile).
SCHEDULED_CONV_BLOCKS = {
    "pointwise-then-strided": lambda: pointwise_relu6_then_padded_conv(channels=32),
    "24-channels": lambda: pointwise_relu6_then_padded_conv(channels=24),
    "residual-block": residual_block,
    "depthwise-block": depthwise_block,
    "strided-depthwise-block": lambda: depthwise_block(stride=2),
}


def concat_branches(channels: int = 8) -> onnx.ModelProto:
    """Two Conv + Relu branches of different ranges joined by Concat along the channels, then a
    1x1 Conv over both: an Inception / FPN-style merge."""
    rng = _rng(7)
    initializers = [
        ("wa", rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32)),
        ("wb", rng.normal(0, 1.2, (channels, 3, 3, 3)).astype(np.float32)),
        ("wc", rng.normal(0, 0.2, (4, 2 * channels, 1, 1)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ca"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["ca"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb"], ["cb"], pads=[1, 1, 1, 1], name="conv_b"),
        helper.make_node("Relu", ["cb"], ["rb"], name="relu_b"),
        helper.make_node("Concat", ["ra", "rb"], ["joined"], axis=1, name="join"),
        helper.make_node("Conv", ["joined", "wc"], ["y"], name="conv_c"),
    ]
    return make_model(
        nodes, [("x", TensorProto.FLOAT, [1, 3, 8, 8])], [("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializers
    )


def model_zoo_constructs(channels: int = 8, groups: int = 2) -> onnx.ModelProto:
    """What the classic model-zoo graphs hold besides convolutions: an opset-9 Dropout with
    its mask output, a variadic Sum (ResNet's residuals) and Max, ShuffleNet's channel shuffle
    (reshape to groups, swap, reshape back) and a strided ConvTranspose (decoders)."""
    rng = _rng(5)
    weights = {
        "w": rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32),
        "up": rng.normal(0, 0.3, (channels, 4, 2, 2)).astype(np.float32),
        "grouped": np.array([1, groups, channels // groups, 8, 8], np.int64),
        "flat": np.array([1, channels, 8, 8], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r"], ["d", "mask"], ratio=0.5, name="dropout"),
        helper.make_node("Sum", ["d", "r", "c"], ["s"], name="sum"),
        helper.make_node("Max", ["s", "r", "d"], ["m"], name="max"),
        helper.make_node("Reshape", ["m", "grouped"], ["g"], name="group"),
        helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4], name="swap"),
        helper.make_node("Reshape", ["t", "flat"], ["shuffled"], name="ungroup"),
        helper.make_node("ConvTranspose", ["shuffled", "up"], ["y"], strides=[2, 2], name="upsample"),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        weights.items(),
        opset=9,
    )
