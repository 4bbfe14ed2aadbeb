"""Progress of long steps, reported through `logging` so that library code never prints.

The CLI attaches a handler that shows these records on stderr; Python API users see them only
if they configure logging for the "tvmq" logger.
"""

import contextlib
import logging
import time

log = logging.getLogger("tvmq")


@contextlib.contextmanager
def step(description: str):
    """Log `description` when a step starts and again with its duration when it ends."""
    log.info("%s ...", description)
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", description, time.perf_counter() - start)


class Progress:
    """Counts work done and logs a bar about every 10% (and at the end)."""

    def __init__(self, description: str, total: int, unit: str):
        self.description, self.total, self.unit = description, total, unit
        self.done, self._next_report = 0, 0.1
        self._start = time.perf_counter()

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        fraction = self.done / self.total if self.total else 1.0
        if fraction >= self._next_report or self.done >= self.total:
            self._next_report = fraction + 0.1
            bar = "#" * int(20 * fraction) + "." * (20 - int(20 * fraction))
            elapsed = time.perf_counter() - self._start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            left = f", {(self.total - self.done) / rate:.0f} s left" if rate and self.done < self.total else ""
            log.info(
                "%s [%s] %d/%d %s (%.1f s, %.1f %s/s%s)",
                self.description,
                bar,
                self.done,
                self.total,
                self.unit,
                elapsed,
                rate,
                self.unit,
                left,
            )
