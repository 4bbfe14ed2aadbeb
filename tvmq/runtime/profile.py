"""Where a package's time goes: each kernel timed on its own, with the arguments it gets in a
real run.

One inference runs with the VM's instrument hook, which sees every kernel call and its
arguments; the first call of each kernel keeps a copy of them (real values: indices stay in
range, so gathers read what they would). Each kernel is then timed by TVM's time_evaluator on
those copies, many calls per measurement, so that even kernels of a few microseconds are
measured in C++ rather than through one Python call each. A kernel's total is its time per call
times the calls in one inference; what the kernels do not add up to of the end-to-end time is
the VM's own work (allocation, argument checks, control flow).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

NOT_RECORDED = "not recorded"  # packages built before tvmq recorded how each kernel was scheduled


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int  # per inference
    ms_per_call: float
    schedule: str  # where its schedule came from (tvmq.codegen.pipeline.SCHEDULE_SOURCES)

    @property
    def total_ms(self) -> float:
        return self.calls * self.ms_per_call

    def to_json(self) -> dict:
        return {**self.__dict__, "total_ms": self.total_ms}


@dataclass(frozen=True)
class Profile:
    kernels: tuple[KernelTime, ...]  # the most time first
    end_to_end_ms: float  # median of a whole inference
    threads: int

    @property
    def kernels_ms(self) -> float:
        return sum(k.total_ms for k in self.kernels)

    def share(self, kernel: KernelTime) -> float:
        """The kernel's part of the end-to-end time."""
        return kernel.total_ms / self.end_to_end_ms if self.end_to_end_ms > 0 else 0.0

    def by_schedule(self) -> dict[str, float]:
        """Milliseconds per schedule source, the most first."""
        totals: dict[str, float] = {}
        for kernel in self.kernels:
            totals[kernel.schedule] = totals.get(kernel.schedule, 0.0) + kernel.total_ms
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def to_json(self) -> dict:
        return {
            "end_to_end_ms": self.end_to_end_ms,
            "kernels_ms": self.kernels_ms,
            "threads": self.threads,
            "by_schedule_ms": self.by_schedule(),
            "kernels": [{**k.to_json(), "share": self.share(k)} for k in self.kernels],
        }


def profile_kernels(vm, library, device, args: list, schedules: dict, min_repeat_ms: int = 10) -> list[KernelTime]:
    """Every kernel of one `vm` run on `args`, timed alone (see the module docstring);
    `library` is the module the VM was loaded from, `schedules` the package's record of how each
    kernel was scheduled."""
    first_args: dict[str, list] = {}
    calls: dict[str, int] = {}

    def instrument(_func, name, before_run, _ret, *call_args):
        if before_run and not name.startswith("vm."):
            calls[name] = calls.get(name, 0) + 1
            if name not in first_args:
                first_args[name] = [_copy(arg, device) for arg in call_args]
        return 0

    vm.set_instrument(instrument)
    try:
        vm["main"](*args)
    finally:
        vm.set_instrument(None)
    times = []
    for name, kernel_args in first_args.items():
        timer = _module_with(library, name).time_evaluator(
            name, device, number=1, repeat=5, min_repeat_ms=min_repeat_ms
        )
        ms = 1e3 * statistics.median(timer(*kernel_args).results)
        times.append(KernelTime(name, calls[name], ms, schedules.get(name, NOT_RECORDED)))
    return sorted(times, key=lambda k: -k.total_ms)


def _module_with(library, name: str):
    """The module of `library` (the VM's, or one it imports: the kernels') defining `name`."""
    modules = [library]
    while modules:
        module = modules.pop(0)
        if module.implements_function(name, False):
            return module
        modules += list(module.imports)
    raise LookupError(f"no module of the library defines kernel {name}")


def _copy(arg, device):
    """A private copy of a kernel argument (the VM reuses its storage), other values as they are."""
    import tvm

    if isinstance(arg, tvm.runtime.Tensor):
        return tvm.runtime.tensor(arg.numpy(), device)
    return arg
