"""Tuning logs: MetaSchedule's database as readable, append-only files, one folder per target.

    tuning_logs/<target>/workloads.jsonl   {"hash": ..., "workload": <Workload JSON>}
    tuning_logs/<target>/records.jsonl     {"hash": ..., "target": ..., "latency_us": ..., "record": <TuningRecord JSON>}

A schedule measured again (tvmq.tune.measure re-measures each kernel's finalists) is appended
once more; its latest measurement is the one that counts. Such a line is marked "confirmed":
it was measured in rounds beside its kernel's other finalists, where a searched candidate was
measured once, alone; a kernel's best record is its fastest confirmed one if it has any (one
lucky measurement among hundreds must not beat schedules that were timed head to head).

Lines are appended under an exclusive lock (two processes can tune into one log), each with a
single write; a line cut short by a killed process, or garbled by hand, is skipped with a
warning and the log stays usable. Records carry the target they were measured on and only
records of the log's target (core count aside) are loaded (MetaSchedule's own lookup ignores
the target).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tvm
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.tirx import IndexMap

from tvmq.files import directory_written_atomically
from tvmq.kernels.intrinsics import intrin_named_in, record_intrin, register_intrinsics

log = logging.getLogger(__name__)

WORKLOADS_FILE = "workloads.jsonl"
RECORDS_FILE = "records.jsonl"
LOCK_FILE = ".lock"


def target_key(target: tvm.target.Target) -> str:
    """The canonical text of a target (its JSON, keys sorted) that records are matched on.
    The core count is left out: a tuned kernel's parallel loops split over however many cores
    run it, so a log tuned on two cores still serves a machine with eight; what must match is
    the instruction set."""
    fields = json.loads(str(target))
    fields.pop("num-cores", None)
    return json.dumps(fields, sort_keys=True)


@dataclass(frozen=True)
class LogLine:
    """A parsed line of a log file and where it came from."""

    data: dict
    path: Path
    number: int


def read_lines(path: Path) -> Iterator[LogLine]:
    """The JSON objects of a .jsonl file; unreadable lines are skipped with a warning."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                log.warning("%s:%d: skipping a corrupt or truncated line (%s)", path, number, err)
                continue
            yield LogLine(data, path, number)


@contextlib.contextmanager
def locked(directory: Path):
    """Hold the log folder's exclusive lock."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_line(path: Path, data: dict) -> None:
    """Append one JSON line with a single write (call under `locked`). If a killed writer left
    the file without a final newline, start on a fresh line so its fragment stays one line."""
    text = json.dumps(data, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    text = "\n" + text
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def mean_latency_us(record: ms.database.TuningRecord) -> float | None:
    """A record's mean measured run time in microseconds (None if it failed to run)."""
    if record.run_secs is None or len(record.run_secs) == 0:
        return None
    seconds = [float(s) for s in record.run_secs]
    if any(s >= 1e9 for s in seconds):  # MetaSchedule marks failed runs with 1e10 s
        return None
    return 1e6 * sum(seconds) / len(seconds)


def _rank(latency_us: float, confirmed: bool) -> tuple[bool, float]:
    """The order of a kernel's records, best first: confirmed ones first, then by latency."""
    return (not confirmed, latency_us)


def record_as_json(record: ms.database.TuningRecord):
    """A record as plain JSON. TuningRecord.as_json fails on traces that change a buffer's layout
    (tvmq's int8 kernels pack their weights): their index maps are written the way Trace.as_json
    writes them (TVM's JSON of the map), which TuningRecord.from_json reads back."""
    from tvm.s_tir.meta_schedule import _ffi_api

    def plain(value):
        if isinstance(value, IndexMap):
            return tvm.ir.save_json(value)
        if isinstance(value, tvm_ffi.Array):
            return [plain(item) for item in value]
        if isinstance(value, tvm_ffi.Map):
            return {plain(k): plain(v) for k, v in value.items()}
        if isinstance(value, tvm.tirx.IntImm | tvm.tirx.FloatImm):
            return value.value
        if value is None or isinstance(value, int | float):
            return value
        if isinstance(value, str):
            return str(value)
        raise TypeError(f"a tuning record holds a {type(value).__name__}, which has no JSON form")

    return plain(_ffi_api.TuningRecordAsJSON(record))


def _workload_hash(workload: ms.database.Workload) -> str:
    return str(workload.as_json()[0])


def _schedule_key(record_json) -> str:
    """What identifies a measured schedule in a record's JSON: its trace (instructions and
    decisions), whatever it measured."""
    trace = record_json[0] if isinstance(record_json, list) and record_json else record_json
    return json.dumps(trace, separators=(",", ":"), sort_keys=True)


def latest_measurements(lines: Iterable[LogLine]) -> list[LogLine]:
    """Record lines without those a later line measured again (same workload, target and
    schedule)."""
    latest = {}
    for line in lines:
        key = (line.data.get("hash"), line.data.get("target"), _schedule_key(line.data.get("record")))
        latest.pop(key, None)  # re-inserted last: lines stay in the order of their latest measurement
        latest[key] = line
    return list(latest.values())


@derived_object
class TuningLog(ms.database.PyDatabase):
    """A MetaSchedule database kept in a tuning-log folder, holding one target's records
    (without the kernels tensorized with a saturating int8 intrinsic unless `weights_7_bit`:
    the model's weights fit them).

    Lookups are served from memory, where a schedule measured again keeps only its latest
    measurement; every new workload and record is also appended to the folder's files, so a run
    killed at any point leaves all it measured for the next one.
    """

    def __init__(self, directory: str | os.PathLike, target: tvm.target.Target, weights_7_bit: bool = True):
        super().__init__()
        self.directory = Path(directory)
        self.target = target
        self.key = target_key(target)
        self.weights_7_bit = weights_7_bit
        self.skipped_other_targets = 0
        self.skipped_intrin = 0
        self._workloads = ms.database.MemoryDatabase()  # finds a kernel's workload by structure
        self._records: dict[str, dict[str, ms.database.TuningRecord]] = {}  # hash -> schedule -> record
        self._confirmed: set[tuple[str, str]] = set()  # (hash, schedule) of confirmed measurements
        register_intrinsics()  # records of tensorized kernels name them
        self._load()

    def _load(self) -> None:
        workloads = {}
        for line in read_lines(self.directory / WORKLOADS_FILE):
            try:
                workload = ms.database.Workload.from_json(line.data["workload"])
            except Exception as err:  # noqa: BLE001 - TVM raises several kinds on bad JSON
                log.warning("%s:%d: skipping an unreadable workload (%s)", line.path, line.number, err)
                continue
            workloads[line.data.get("hash")] = self._workloads.commit_workload(workload.mod)
        for line in latest_measurements(read_lines(self.directory / RECORDS_FILE)):
            if line.data.get("target") != self.key:
                self.skipped_other_targets += 1
                continue
            workload = workloads.get(line.data.get("hash"))
            if workload is None:
                log.warning("%s:%d: skipping a record of an unknown workload", line.path, line.number)
                continue
            try:
                record = ms.database.TuningRecord.from_json(line.data["record"], workload)
            except Exception as err:  # noqa: BLE001
                log.warning("%s:%d: skipping an unreadable record (%s)", line.path, line.number, err)
                continue
            intrin = record_intrin(record)
            if intrin is not None and intrin.saturates and not self.weights_7_bit:
                self.skipped_intrin += 1
                continue
            self._keep(record, line.data["record"], bool(line.data.get("confirmed")))

    def _keep(self, record: ms.database.TuningRecord, record_json, confirmed: bool) -> None:
        workload_hash, schedule = _workload_hash(record.workload), _schedule_key(record_json)
        self._records.setdefault(workload_hash, {})[schedule] = record
        if confirmed:
            self._confirmed.add((workload_hash, schedule))
        else:
            self._confirmed.discard((workload_hash, schedule))

    def has_workload(self, mod: tvm.IRModule) -> bool:
        return self._workloads.has_workload(mod)

    def commit_workload(self, mod: tvm.IRModule) -> ms.database.Workload:
        known = self._workloads.has_workload(mod)
        workload = self._workloads.commit_workload(mod)
        if not known:
            with locked(self.directory):
                append_line(
                    self.directory / WORKLOADS_FILE,
                    {"hash": _workload_hash(workload), "workload": workload.as_json()},
                )
        return workload

    def commit_tuning_record(self, record: ms.database.TuningRecord) -> None:
        self._commit(record, confirmed=False)

    def commit_confirmed_record(self, record: ms.database.TuningRecord) -> None:
        """Add a measurement taken beside the kernel's other finalists, in interleaved rounds."""
        self._commit(record, confirmed=True)

    def _commit(self, record: ms.database.TuningRecord, confirmed: bool) -> None:
        record_json = record_as_json(record)
        self._keep(record, record_json, confirmed)
        line = {
            "hash": _workload_hash(record.workload),
            "target": target_key(record.target) if record.target is not None else self.key,
            "latency_us": mean_latency_us(record),
            "record": record_json,
        }
        if confirmed:
            line["confirmed"] = True
        with locked(self.directory):
            append_line(self.directory / RECORDS_FILE, line)

    def measured_record(
        self, workload: ms.database.Workload, trace: tvm.s_tir.schedule.Trace
    ) -> ms.database.TuningRecord | None:
        """The latest record of this very schedule of the workload, if it ran."""
        key = _schedule_key(record_as_json(ms.database.TuningRecord(trace, workload)))
        record = self._records.get(_workload_hash(workload), {}).get(key)
        return record if record is not None and mean_latency_us(record) is not None else None

    def get_top_k(self, workload: ms.database.Workload, top_k: int) -> list:
        """The workload's `top_k` best records that ran: confirmed ones first, then by latency."""
        return self._ranked(workload, confirmed_first=True)[:top_k]

    def fastest(self, workload: ms.database.Workload, count: int) -> list:
        """The workload's `count` fastest records that ran, confirmed or not."""
        return self._ranked(workload, confirmed_first=False)[:count]

    def _ranked(self, workload: ms.database.Workload, confirmed_first: bool) -> list:
        workload_hash = _workload_hash(workload)
        timed = []
        for schedule, record in self._records.get(workload_hash, {}).items():
            latency = mean_latency_us(record)
            if latency is not None:
                confirmed = confirmed_first and (workload_hash, schedule) in self._confirmed
                timed.append((_rank(latency, confirmed), record))
        return [record for _, record in sorted(timed, key=lambda t: t[0])]

    def get_all_tuning_records(self) -> list:
        return [record for by_schedule in self._records.values() for record in by_schedule.values()]

    def __len__(self) -> int:
        return sum(len(by_schedule) for by_schedule in self._records.values())


@dataclass(frozen=True)
class WorkloadSummary:
    """One tuned kernel of a log: what it computes, how often it was measured, the time of its
    best record (the one a compile applies)."""

    hash: str
    blocks: str  # the kernel's compute blocks, e.g. "conv2d_nchw+T_add+T_relu"
    records: int
    best_us: float | None
    targets: tuple[str, ...]


def _block_names(workload: ms.database.Workload) -> str:
    """The kernel's compute blocks by name, read off its TVMScript."""
    names = re.findall(r'T\.sblock\("([^"]+)"\)', workload.mod.script())
    return "+".join(dict.fromkeys(name for name in names if name != "root")) or "?"


def summarize(directory: str | os.PathLike) -> list[WorkloadSummary]:
    """Every workload of a log folder with its record count, best latency and targets."""
    directory = Path(directory)
    blocks = {}
    for line in read_lines(directory / WORKLOADS_FILE):
        try:
            blocks[line.data["hash"]] = _block_names(ms.database.Workload.from_json(line.data["workload"]))
        except Exception:  # noqa: BLE001 - an unreadable workload is listed without its blocks
            blocks[line.data.get("hash")] = "?"
    records: dict[str, list[dict]] = {h: [] for h in blocks}
    for line in latest_measurements(read_lines(directory / RECORDS_FILE)):
        records.setdefault(line.data.get("hash"), []).append(line.data)
    summaries = []
    for workload_hash, lines in records.items():
        ranked = _ranked_lines(lines)
        summaries.append(
            WorkloadSummary(
                hash=workload_hash,
                blocks=blocks.get(workload_hash, "(workload missing)"),
                records=len(lines),
                best_us=ranked[0]["latency_us"] if ranked else None,
                targets=tuple(sorted({line.get("target", "?") for line in lines})),
            )
        )
    return summaries


def _ranked_lines(lines: list[dict]) -> list[dict]:
    """Record lines that ran, best first (as TuningLog.get_top_k ranks them)."""
    timed = [line for line in lines if line.get("latency_us") is not None]
    return sorted(timed, key=lambda line: _rank(line["latency_us"], bool(line.get("confirmed"))))


def merge(sources: list[str | os.PathLike], destination: str | os.PathLike, top: int | None = None) -> int:
    """Write the union of log folders to `destination` (replacing it whole, atomically): each
    workload once, each measured schedule once with its latest measurement (a later source's
    counts over an earlier one's), with `top` only the best `top` records (confirmed first) per
    workload and target, and among those the best for each of tvmq's int8 intrinsics and the
    best without one (a model with 8-bit weights cannot use the saturating ones), and only the
    workloads those records belong to. Returns the number of records written."""
    workloads, lines = {}, []
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise FileNotFoundError(f"tuning log {source} does not exist")
        for line in read_lines(source / WORKLOADS_FILE):
            workloads.setdefault(line.data.get("hash"), line.data)
        lines += read_lines(source / RECORDS_FILE)
    records = {}
    for line in latest_measurements(lines):
        intrin = intrin_named_in(json.dumps(line.data))
        key = (line.data.get("hash"), line.data.get("target"), intrin and intrin.name)
        records.setdefault(key, []).append(line.data)
    kept = []
    for group in records.values():
        kept += _ranked_lines(group)[:top] if top else group
    if top:  # a pruned log keeps only the workloads its records need
        needed = {record.get("hash") for record in kept}
        workloads = {h: w for h, w in workloads.items() if h in needed}
    with directory_written_atomically(destination) as staging:
        for name, lines in ((WORKLOADS_FILE, workloads.values()), (RECORDS_FILE, kept)):
            text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
            (staging / name).write_text(text)
    return len(kept)
