"""Tune: MetaSchedule autotuning per target, with tuning logs kept in tuning_logs/<target>/.

tasks.py extracts a model's kernels, tuner.py searches schedules for them (tune_model),
int8_kernels.py holds the x86 int8 intrinsics and the search space built on them, intrinsics.py
imports TVM's own intrinsics fast, log.py keeps the tuning-log folder (a MetaSchedule database,
merged and pruned by `tvmq logs`), builder.py builds candidates in a way that works on small
machines, remote.py measures on boards over RPC. Compiling with a log is tvmq.build's job.
"""
