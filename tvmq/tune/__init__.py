"""Tune: MetaSchedule autotuning per target, into tuning logs (tuning_logs/<target>/).

tuner.py runs the search over a model's kernels (tune_model) with the XGBoost cost model;
measure.py measures each kernel's default schedule before it and the best schedules again
after it; builder.py builds candidates in a way that works on small machines; remote.py
measures on boards over RPC; tvm_intrinsics.py imports TVM's own intrinsics fast. What is
tuned (the kernels, their search spaces) and the log itself are tvmq.kernels'; compiling with a
log is tvmq.codegen's.
"""
