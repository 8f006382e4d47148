"""What every drill shares: its errors, its log line, bounded waiting (wait_for), and the record
of what restore() had to do beyond starting things (interventions)."""

from __future__ import annotations

import subprocess
import time

from lab.names import LabError

class DrillError(AssertionError):
    """A bounded wait ran out, or the lab could not be put back; the message says what."""


class SqlError(Exception):
    pass


class SessionClosed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[drill {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- waiting -------------------------------------------------------------------------------


def wait_for(what: str, probe, timeout: float = 30, interval: float = 0.25):
    """Poll probe() until it returns a truthy value; returns (value, seconds waited).
    Raises DrillError naming `what` and the last value after `timeout` seconds."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = probe()
        except (LabError, OSError, subprocess.SubprocessError, SqlError, SessionClosed) as exc:
            last = f"{type(exc).__name__}: {exc}"
            ok = False
        else:
            ok = bool(last)
        elapsed = time.monotonic() - start
        if ok:
            return last, elapsed
        if elapsed > timeout:
            raise DrillError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)



# What restore() had to do beyond starting things: (time, text), for the drills' reports.
interventions: list[tuple[str, str]] = []


def intervene(note: str, show: bool = True) -> None:
    """Record an intervention of restore() in `interventions` (and log it, unless `show` is off)."""
    if show:
        log(f"restore: {note}")
    interventions.append((time.strftime("%H:%M:%S"), note))
