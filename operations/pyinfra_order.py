"""pyinfra's operation order (the line numbers of the deploy code that called an operation),
read from the frames instead of from inspect.stack().

pyinfra 3.10's get_operation_order_from_stack(), run in CLI mode for every operation call on
every host, builds inspect.stack(): getframeinfo() for each of the ~20 frames above the call,
each reading its source file's lines and searching the loaded modules for the frame's module,
only to keep each frame's file name and line number. A cProfile of a no-op on the lab put it
near 2 s of 5.5 s profiled (8145 getframeinfo calls for 387 operation calls; docs/design.md).

This gives the same list: the same frames (the caller's and every one above it), walked the
same way (outermost first, from the first frame of the deploy file pyinfra is running), the
file name getframeinfo() would give (the code's file; getsourcefile()'s answer for the only case
where it differs, a .pyc name) and its line number (the start of the executing instruction's
position, as getframeinfo() takes it, else the frame's line). The order makes each operation's
hash (pyinfra/api/operation.py solve_operation_consistency): a difference would rename
operations between runs. test_pyinfra_order.py compares both answers on every operation call of
a whole site's planning.

Only for the pinned version (requirements.txt), as operations/pyinfra_args.py.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import itertools
import sys

import pyinfra
from pyinfra.api.util import PYINFRA_INSTALL_DIR

from operations.pyinfra_args import PINNED, PYINFRA_VERSION, put  # noqa: F401  (the version, read by its test)

def filename(frame) -> str:
    """The file name inspect.getframeinfo() gives the frame."""
    name = frame.f_code.co_filename
    if name.endswith(tuple(importlib.machinery.BYTECODE_SUFFIXES)):
        return inspect.getsourcefile(frame) or name
    return name


def lineno(frame) -> int:
    """The line number inspect.getframeinfo() gives the frame: where its executing instruction
    starts, or the frame's line when the code has no position for it. Outside a tracer the two
    are the same line (both read from the code's location table at f_lasti), so
    test_pyinfra_order.py cannot tell them apart; getframeinfo()'s rule is kept for a run under
    one."""
    if frame.f_lasti >= 0:
        start = next(itertools.islice(frame.f_code.co_positions(), frame.f_lasti // 2, None))[0]
        if start is not None:
            return start
    return frame.f_lineno


def operation_order(state) -> list[int]:
    """get_operation_order_from_stack(state), without inspect.stack(): called in its place, so
    the frames start at its caller (pyinfra's own frame, which inspect.stack() also lists, is in
    pyinfra's directory and never counted)."""
    frames = []
    frame = sys._getframe(1)
    while frame:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    first = 0
    if state.current_deploy_filename:
        for first, frame in enumerate(frames):
            if filename(frame) == state.current_deploy_filename:
                break
        else:  # pyinfra's loop ends on its own frame, which it does not count: no line
            first = len(frames)
    order = [state.current_op_file_number] if pyinfra.is_cli else []
    for frame in frames[first:]:
        name = filename(frame)
        if not name.startswith(PYINFRA_INSTALL_DIR):
            order.append(lineno(frame))
    return order


def install() -> bool:
    """Use operation_order in pyinfra.api.operation (solve_operation_consistency looks the name
    up there at each call); True if installed (now or before)."""
    return put(operation_order, "get_operation_order_from_stack", ("pyinfra.api.operation",))


install()
