"""Tuning logs survive what happens to files: kills mid-write, hand edits, two writers, other
targets' records. MetaSchedule records are built directly here; no tuning runs."""

import json
import multiprocessing

import pytest
import tvm
from tir_kernels import matmul
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from tvmq.kernels.log import RECORDS_FILE, WORKLOADS_FILE, TuningLog, merge, summarize, target_key

HOST = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
OTHER = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})


def _record(log, seconds, target=HOST, schedule=None):
    """A record of a small schedule, named by `schedule` (by default a schedule of its own for
    each latency): a block annotated with the name."""
    mod = tvm.IRModule({"main": matmul})
    workload = log.commit_workload(mod)
    sch = s_tir.Schedule(mod)
    sch.annotate(sch.get_sblock("C"), "tvmq.test_schedule", schedule or repr(seconds))
    args = ms.arg_info.ArgInfo.from_prim_func(matmul)
    return ms.database.TuningRecord(sch.trace, workload, [seconds], target, args)


def _best_us(log):
    workload = log.commit_workload(tvm.IRModule({"main": matmul}))
    [best] = log.get_top_k(workload, 1)
    return 1e6 * float(best.run_secs[0])


def test_records_are_kept_in_readable_lines_and_reloaded(tmp_path):
    log = TuningLog(tmp_path, HOST)
    for seconds in (3e-4, 1e-4, 2e-4):
        log.commit_tuning_record(_record(log, seconds))
    lines = [json.loads(line) for line in (tmp_path / RECORDS_FILE).read_text().splitlines()]
    assert [round(line["latency_us"]) for line in lines] == [300, 100, 200]
    assert {line["target"] for line in lines} == {target_key(HOST)}
    assert len((tmp_path / WORKLOADS_FILE).read_text().splitlines()) == 1  # the workload once
    reloaded = TuningLog(tmp_path, HOST)
    assert len(reloaded.get_all_tuning_records()) == 3
    assert _best_us(reloaded) == pytest.approx(100)


def test_records_of_another_target_are_never_applied(tmp_path):
    log = TuningLog(tmp_path, OTHER)
    log.commit_tuning_record(_record(log, 1e-4, target=OTHER))
    mine = TuningLog(tmp_path, HOST)
    assert mine.get_all_tuning_records() == [] and mine.skipped_other_targets == 1


def test_records_apply_on_a_machine_with_another_core_count(tmp_path):
    """Same instruction set, more cores: the schedules still apply (their parallel loops use
    whatever cores run them), so a log tuned on 2 cores serves an 8-core machine."""
    log = TuningLog(tmp_path, HOST)
    log.commit_tuning_record(_record(log, 1e-4))
    eight_cores = TuningLog(tmp_path, tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 8}))
    assert len(eight_cores.get_all_tuning_records()) == 1 and eight_cores.skipped_other_targets == 0


def test_a_pruned_merge_keeps_the_best_record_and_only_the_kernels_it_needs(tmp_path):
    """Shipped logs are pruned: one best record per kernel, and no kernel without a record."""
    measured = TuningLog(tmp_path / "measured", HOST)
    for seconds in (2e-4, 1e-4):
        measured.commit_tuning_record(_record(measured, seconds))
    never_measured = TuningLog(tmp_path / "never", HOST)
    never_measured.commit_workload(tvm.IRModule({"main": matmul.with_attr("note", "never measured")}))
    sources = [tmp_path / "measured", tmp_path / "never"]
    assert merge(sources, tmp_path / "all") == 2
    assert len((tmp_path / "all" / WORKLOADS_FILE).read_text().splitlines()) == 2
    assert merge(sources, tmp_path / "pruned", top=1) == 1
    assert len((tmp_path / "pruned" / WORKLOADS_FILE).read_text().splitlines()) == 1
    assert _best_us(TuningLog(tmp_path / "pruned", HOST)) == pytest.approx(100)


def test_a_schedule_measured_again_counts_with_its_latest_measurement(tmp_path):
    """Tuning measures its finalists again: a schedule's lucky first measurement (100 us) must
    not stay its latency once it measured 400 us on repeat, in memory, reloaded and merged;
    the other schedule (200 us) is then the best."""
    log = TuningLog(tmp_path / "log", HOST)
    log.commit_tuning_record(_record(log, 1e-4, schedule="lucky"))
    log.commit_tuning_record(_record(log, 2e-4, schedule="steady"))
    assert _best_us(log) == pytest.approx(100)
    log.commit_tuning_record(_record(log, 4e-4, schedule="lucky"))
    assert len(log) == 2 and _best_us(log) == pytest.approx(200)
    assert len((tmp_path / "log" / RECORDS_FILE).read_text().splitlines()) == 3  # appended, not rewritten
    reloaded = TuningLog(tmp_path / "log", HOST)
    assert len(reloaded) == 2 and _best_us(reloaded) == pytest.approx(200)
    assert merge([tmp_path / "log"], tmp_path / "merged") == 2
    assert _best_us(TuningLog(tmp_path / "merged", HOST)) == pytest.approx(200)


def test_a_record_measured_once_never_outranks_one_confirmed_beside_its_rivals(tmp_path):
    """A searched candidate is measured once, alone; the finalists again, in interleaved rounds
    (confirmed). A single lucky 100 us must not beat a confirmed 200 us: not in memory, not
    reloaded, not in a pruned merge, not in the log's summary. Measured once more without
    confirmation, the 200 us schedule loses its standing and the 100 us one leads again."""
    log = TuningLog(tmp_path / "log", HOST)
    log.commit_tuning_record(_record(log, 1e-4, schedule="measured once"))
    log.commit_confirmed_record(_record(log, 2e-4, schedule="head to head"))
    workload = log.commit_workload(tvm.IRModule({"main": matmul}))
    assert _best_us(log) == pytest.approx(200)
    assert 1e6 * float(log.fastest(workload, 1)[0].run_secs[0]) == pytest.approx(100)
    assert _best_us(TuningLog(tmp_path / "log", HOST)) == pytest.approx(200)
    assert merge([tmp_path / "log"], tmp_path / "pruned", top=1) == 1
    assert _best_us(TuningLog(tmp_path / "pruned", HOST)) == pytest.approx(200)
    assert [summary.best_us for summary in summarize(tmp_path / "log")] == [pytest.approx(200)]
    log.commit_tuning_record(_record(log, 2e-4, schedule="head to head"))
    assert _best_us(log) == pytest.approx(100)
    assert _best_us(TuningLog(tmp_path / "log", HOST)) == pytest.approx(100)


def test_truncated_and_corrupt_lines_are_skipped_with_a_warning(tmp_path, caplog):
    log = TuningLog(tmp_path, HOST)
    for seconds in (1e-4, 2e-4):
        log.commit_tuning_record(_record(log, seconds))
    records = tmp_path / RECORDS_FILE
    text = records.read_text()
    # A line garbled by hand in the middle, and a write cut short by a kill at the end.
    records.write_text("not json at all\n" + text + text.splitlines()[0][:50])
    with caplog.at_level("WARNING"):
        survivor = TuningLog(tmp_path, HOST)
    assert len(survivor.get_all_tuning_records()) == 2
    assert f"{records}:1: skipping a corrupt or truncated line" in caplog.text
    assert f"{records}:4: skipping a corrupt or truncated line" in caplog.text
    # The next record starts on a line of its own, after the fragment.
    survivor.commit_tuning_record(_record(survivor, 5e-5))
    assert len(TuningLog(tmp_path, HOST).get_all_tuning_records()) == 3


def _append_records(directory, count, writer):
    log = TuningLog(directory, HOST)
    for i in range(count):
        log.commit_tuning_record(_record(log, 1e-4 + i * 1e-6, schedule=f"{writer}-{i}"))


def test_two_processes_appending_to_one_log_lose_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_records, args=(tmp_path, 25, writer)) for writer in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lines = (tmp_path / RECORDS_FILE).read_text().splitlines()
    assert len(lines) == 50 and all(json.loads(line)["latency_us"] for line in lines)
    assert len(TuningLog(tmp_path, HOST).get_all_tuning_records()) == 50
