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
