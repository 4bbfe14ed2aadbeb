"""Autotuning: small runs of the real MetaSchedule search on a tiny model (seconds, not hours);
the logs they leave; compiling with a log; a run killed mid-way; measuring over RPC."""

import json
import os
import signal
import subprocess
import sys
import time

import onnx
import onnx_models
import pytest
import tvm
from conftest import assert_matches_reference
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

import tvmq
from tvmq.compiler import codegen_module
from tvmq.kernels.log import RECORDS_FILE, TuningLog, mean_latency_us
from tvmq.kernels.spaces import default_schedule
from tvmq.kernels.tasks import tuning_target
from tvmq.target import load_target
from tvmq.tune.builder import local_builder
from tvmq.tune.measure import ROUNDS, measure_default_schedules, remeasure_finalists
from tvmq.tune.tuner import batch_size, quiet_meta_schedule, tune_model

# The MLP's three kernels (softmax as the lowering computes it: tvmq.codegen.lower.POLYNOMIALS).
KERNELS = {"fast_softmax", "fused_matmul_add_relu", "fused_matmul1_add1"}


@pytest.fixture(scope="module")
def mlp():
    return tvmq.load_model(onnx_models.mlp())


@pytest.fixture(scope="module")
def tuned_log(tmp_path_factory, mlp):
    log_dir = tmp_path_factory.mktemp("tune") / "host"
    result = tune_model(mlp, "host", log_dir, trials=6)
    return log_dir, result


def _scheduled_kernels(model, log_dir):
    """Kernels whose code comes from the log, read off the IR the compiler builds."""
    target = tuning_target(load_target("host"))
    mod = codegen_module(model.mod, load_target("host"))
    passes = [
        *relax.pipeline.library_dispatch_passes(target),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target, TuningLog(log_dir, target), tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(tvm.ir.transform.Sequential(passes)(mod))
    return {
        gv.name_hint
        for gv, func in applied.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs and func.attrs.get("tirx.is_scheduled", False)
    }


def test_tuning_measures_the_model_kernels_into_the_log(tuned_log):
    log_dir, result = tuned_log
    assert {task.name for task in result.tasks} == KERNELS
    assert result.trials >= 6 and result.trials_per_minute > 0
    lines = [json.loads(line) for line in (log_dir / RECORDS_FILE).read_text().splitlines()]
    assert result.remeasured >= 2  # the first matmul's default schedule and searched ones, again
    assert len(lines) == result.trials + result.remeasured
    assert sum(line["latency_us"] is not None for line in lines) >= 3


@pytest.fixture(scope="module")
def mlp_contexts(tmp_path_factory, mlp):
    """The MLP's kernels as tuning sees them (MetaSchedule tune contexts), and the target."""
    from tvmq.compiler import codegen_module
    from tvmq.kernels.spaces import tune_contexts
    from tvmq.kernels.tasks import extract_tasks

    preset = load_target("host")
    target = tuning_target(preset)
    tasks = extract_tasks(codegen_module(mlp.mod, preset), target)
    with quiet_meta_schedule():
        work_dir = str(tmp_path_factory.mktemp("contexts"))
        contexts, _ = tune_contexts(tasks, work_dir, num_threads=1, seed=0, weights_7_bit=True)
    return {context.task_name: context for context in contexts}, target


def test_every_run_measures_the_default_schedules_into_the_log_once(tuned_log, mlp_contexts):
    """The first matmul (64 output columns) compiles without a log to tvmq's default float
    schedule; the second's 10 columns fill no vector and softmax is no matmul, so they have none.
    The log must hold that schedule measured, whatever the search sampled: its best record is
    then never slower than compiling without a log. A later run finds it and measures nothing."""
    log_dir, _ = tuned_log
    contexts, target = mlp_contexts
    defaults = {name: default_schedule(context) for name, context in contexts.items()}
    assert {name for name, sch in defaults.items() if sch is not None} == {"fused_matmul_add_relu"}
    database = TuningLog(log_dir, target)
    context = contexts["fused_matmul_add_relu"]
    records = database.get_top_k(database.commit_workload(context.mod), len(database))
    assert str(defaults["fused_matmul_add_relu"].trace) in {str(record.trace) for record in records}
    measured = measure_default_schedules(list(contexts.values()), local_builder(1), ms.runner.LocalRunner(), database)
    assert measured == 0


def test_lucky_records_are_measured_again_and_never_win_unconfirmed(tmp_path, mlp_contexts):
    """Two searched schedules of the first matmul logged at an impossible 1 and 2 ns, the default
    schedule at 1 ms. One pass of finalists (1 finalist here) measures the fastest record again
    beside the default schedule; the 2 ns record is then the fastest, measured once, and a
    compile must still take one of the two confirmed ones. A full run measures it in its turn,
    beside the confirmed leader and the default schedule (one schedule if the default leads).
    The log then holds the times all three really run in (a microsecond or so, more on a busy
    machine, where the searched ones' parallel loops wait for a core)."""
    contexts, target = mlp_contexts
    context = contexts["fused_matmul_add_relu"]
    database = TuningLog(tmp_path, target)
    workload = database.commit_workload(context.mod)
    union = context.space_generator
    searched = [
        sch
        for sch in union.space_generators[0].generate_design_space(context.mod)
        if all(postproc.apply(sch) for postproc in union.postprocs)
    ]
    assert len({str(sch.trace) for sch in searched}) >= 2
    for sch, seconds in ((default_schedule(context), 1e-3), (searched[0], 1e-9), (searched[1], 2e-9)):
        args = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [seconds], target, args))

    def remeasure(passes):
        return remeasure_finalists([context], local_builder(1), ms.runner.LocalRunner(), database, 1, 2, passes)

    assert remeasure(passes=1) == 2
    assert mean_latency_us(database.fastest(workload, 1)[0]) == pytest.approx(2e-3)
    [best] = database.get_top_k(workload, 1)
    assert str(best.trace) != str(searched[1].trace) and mean_latency_us(best) > 1e-3
    default_leads = str(best.trace) == str(default_schedule(context).trace)
    assert remeasure(passes=3) == (2 if default_leads else 3)
    latencies = [mean_latency_us(record) for record in database.get_top_k(workload, 5)]
    assert len(latencies) == 3 and min(latencies) > 1e-3  # no kernel runs in 1 or 2 ns
    assert all(abs(us - 1000) > 1e-6 for us in latencies)  # the default schedule's 1 ms replaced too


def test_compiling_with_the_log_uses_the_tuned_kernels_and_reports_coverage(tmp_path, mlp, tuned_log):
    log_dir, result = tuned_log
    tuned = {task.name for task in result.tasks if task.best_us is not None}
    metadata = tvmq.compile_model(mlp, "host", tmp_path / "pkg", tuning_log=log_dir)
    assert set(metadata.tuning["tuned"]) == tuned
    assert set(metadata.tuning["untuned"]) == KERNELS - tuned
    assert _scheduled_kernels(mlp, log_dir) == tuned
    assert_matches_reference(mlp, tvmq.load_package(tmp_path / "pkg"))


def test_a_log_tuned_for_another_cpu_covers_nothing(tmp_path, mlp, tuned_log):
    log_dir, _ = tuned_log
    metadata = tvmq.compile_model(mlp, "x86-avx2", tmp_path / "pkg", tuning_log=log_dir)
    assert metadata.tuning["tuned"] == [] and set(metadata.tuning["untuned"]) == KERNELS


def test_a_spent_time_budget_ends_the_run_with_what_was_measured(tmp_path, mlp, mlp_contexts):
    """A budget shorter than one batch: the run stops once the default schedules and the
    first round's batches (one batch for each kernel) are measured, keeping all of them,
    instead of spending all 30 trials, and returns normally."""
    contexts, _ = mlp_contexts
    defaults = sum(default_schedule(context) is not None for context in contexts.values())
    result = tune_model(mlp, "host", tmp_path / "log", trials=30, time_budget_minutes=0.001)
    assert result.trials == defaults + len(KERNELS) * batch_size(30 - defaults, len(KERNELS)) < 30
    assert all(task.best_us is not None for task in result.tasks)


def test_a_killed_run_leaves_a_log_the_next_run_resumes(tmp_path, mlp):
    model_path = tmp_path / "mlp.onnx"
    onnx.save(onnx_models.mlp(), model_path)
    log_dir = tmp_path / "log"
    command = [
        sys.executable,
        "-m",
        "tvmq.cli",
        "tune",
        str(model_path),
        "-t",
        "host",
        "--trials",
        "30",  # a first round of 3 x 3 trials reaches the log, then it is killed mid-run
        "--log",
        str(log_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = log_dir / RECORDS_FILE
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not records.exists() or not records.read_text().count("\n")):
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = TuningLog(log_dir, tuning_target(load_target("host"))).get_all_tuning_records()
    assert before, "the killed run measured nothing in 4 minutes"
    tune_model(mlp, "host", log_dir, trials=3)
    after = TuningLog(log_dir, tuning_target(load_target("host"))).get_all_tuning_records()
    assert len(after) >= len(before) + 3


@derived_object
class _CountingRunner(ms.runner.PyRunner):
    """Passes every measurement on to `runner`, counting them."""

    def __init__(self, runner):
        super().__init__()
        self.runner, self.inputs = runner, 0

    def run(self, runner_inputs):
        self.inputs += len(runner_inputs)
        return self.runner.run(runner_inputs)


def test_candidates_are_measured_over_rpc_on_loopback(tmp_path, mlp):
    """Every measurement of the run (default schedules, search, finalists' rounds) goes to the
    board through the tracker, and each kernel comes back with a measured time."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    from tvmq.tune.remote import rpc_runner

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = rpc.Server(
        host="127.0.0.1", port=9300, port_end=9400, tracker_addr=("127.0.0.1", tracker.port), key="test-board"
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            summary = rpc.connect_tracker("127.0.0.1", tracker.port).summary()
            if "test-board" in json.dumps(summary):  # the server has registered its key
                break
            time.sleep(0.5)
        runner = _CountingRunner(rpc_runner(f"127.0.0.1:{tracker.port}", "test-board"))
        result = tune_model(mlp, "host", tmp_path / "log", trials=3, runner=runner)
    finally:
        server.terminate()
        tracker.terminate()
    assert runner.inputs == result.trials + ROUNDS * result.remeasured
    assert all(task.best_us is not None for task in result.tasks)


def test_logs_show_and_merge_from_the_command_line(cli, tmp_path, tuned_log):
    log_dir, _ = tuned_log
    shown = cli("logs", "show", log_dir)
    assert shown.code == 0 and "matmul" in shown.out and "kind=llvm" in shown.out
    merged = cli("logs", "merge", log_dir, log_dir, "-o", tmp_path / "merged", "--top", "1")
    assert merged.code == 0
    lines = (tmp_path / "merged" / RECORDS_FILE).read_text().splitlines()
    hashes = [json.loads(line)["hash"] for line in lines]
    assert len(hashes) == len(set(hashes))  # duplicates dropped, one best record per kernel
    model = tmp_path / "mlp.onnx"
    onnx.save(onnx_models.mlp(), model)
    missing = cli("compile", model, "-t", "host", "-o", tmp_path / "o", "--tuning-log", tmp_path / "nolog")
    assert missing.code == 1 and f"tuning log {tmp_path / 'nolog'} does not exist" in missing.err
    assert not (tmp_path / "o").exists()
