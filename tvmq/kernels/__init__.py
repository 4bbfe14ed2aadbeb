"""Kernels: the code each fused kernel of a model gets, on every target.

    intrinsics      int8 dot-product tensor intrinsics (x86 VNNI / AVX-512BW / AVX2, ARM sdot / NEON)
    packing         int8 reductions mapped onto an intrinsic, weights packed for it
    tiling          the register tiling that the CPU default schedules share
    float_schedule  the default schedule of float convolutions and matmuls on CPUs
    int8_schedule   the default schedule of int8 ones, around the target's intrinsic
    gpu_schedule    the default schedule of GPU kernels (TVM's dlight rules)
    spaces, rules   MetaSchedule search spaces (and their int8 rule and postprocessor)
    tasks           a model's kernels as tuning tasks, and which of them a log covers
    log             tuning logs: each kernel's measured schedules per target

Compiling (tvmq.codegen) applies a log's records or the default schedules; tuning
(tvmq.tune) searches the spaces and writes the log.
"""
