"""Importing TVM's tensor intrinsics in seconds instead of minutes.

MetaSchedule imports `tvm.s_tir.tensor_intrin` before tuning. That registers ~250 TVMScript
functions, and parsing each calls `inspect.stack()`, which looks up the source module of every
frame by scanning `sys.modules`: with torch loaded (tvm_ffi imports it) that takes minutes.
The parser only reads the frames, their locals and their current source lines, so a stack built
from those alone gives it the same answers in seconds.
"""

from __future__ import annotations

import inspect
import linecache
import sys


def _light_stack(context: int = 1) -> list[inspect.FrameInfo]:
    frame, stack = sys._getframe(1), []
    while frame is not None:
        code = frame.f_code
        line = linecache.getline(code.co_filename, frame.f_lineno)
        stack.append(
            inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, [line] if line else None, 0)
        )
        frame = frame.f_back
    return stack


def import_tensor_intrinsics() -> None:
    """Import tvm.s_tir.tensor_intrin (once per process) with the light stack."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.stack
    inspect.stack = _light_stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401 - imported for its registrations
    finally:
        inspect.stack = original
