"""The bundled example (examples/fashion_mnist) as the tests use it."""

from tvmq.resources import examples_dir

EXAMPLE = examples_dir() / "fashion_mnist"
# onnxruntime's top-1 on the 500 bundled test images (examples/fashion_mnist/README.md).
FP32_TOP1 = 0.946
