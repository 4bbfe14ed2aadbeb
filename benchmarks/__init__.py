"""tvmq's benchmarks and checks, against onnxruntime and PyTorch, on this machine.

Run from the repository root, as `python -m benchmarks.NAME [--help]` (benchmarks/README.md
gives the command lines, what each measures and the results so far, which go to
benchmarks/results/):

    matrix              the benchmark matrix: latency at 1 and 2 threads, size, accuracy or
                        fidelity and build time of every model and system, tuned and untuned
    kernels             one int8 MatMul and convolution against tuned fp32 and onnxruntime,
                        per x86 int8 instruction set (GOP/s)
    tuning              untuned vs tuned tvmq against onnxruntime; shipped vs full tuning log
    tune_shipped_logs   tune the benchmark models and fold the results into tuning_logs/
    quant_accuracy      int8 accuracy on the full Fashion-MNIST test set: tvmq's QConfig grid
                        against onnxruntime's quantize_static
    quant_fidelity      int8 fidelity to fp32 of EfficientNet-Lite0 (top-1 agreement) and
                        MiniLM-L6 (embedding cosine) against onnxruntime and torch
    real_models         legacy torch.onnx exports that TVM's importer rejects import through
                        tvmq, compile, and match onnxruntime
    check_cuda          build, run, compare and time CUDA packages on a GPU
    train_example       train the bundled Fashion-MNIST CNN (examples/fashion_mnist)

What they share:

    zoo                 the models (export to ONNX, the torch modules) and their data:
                        calibration and evaluation samples, photo crops, sentences, Fashion-MNIST
    peers               the systems tvmq is compared with: onnxruntime fp32 and int8
                        (quantize_static, quantize_dynamic), PyTorch fp32 and quantize_dynamic;
                        a tvmq package behind the same runner interface
    timing              timers, interleaved rounds and their spread; the machine, the tvmq
                        revision, tvmq's progress log and the results files
    metrics             fidelity to the float reference (top-1 agreement, KL, embedding
                        cosine) and the shared table cells
"""
