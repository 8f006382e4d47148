"""Where one pyinfra run's wall time goes: `python -m tests.bench.phases SITE deploy.py` runs
pyinfra's own CLI in this process with timestamps on its phases, and prints them after its
output (stderr):

    start -> pyinfra imported -> inventory -> connected -> preflight done (first host)
    -> each controller's pre-run bundle (sent, answered) -> planned -> operations run
    (the health report's verdict writes among them) -> end

Figures, not assertions; the bench (tests/bench/deploy.py --noop) prints them for one no-op
run beside its medians. The hooks only wrap functions (pyinfra's and ours) and time them:
nothing the run does changes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

START = time.monotonic()
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

marks: list[tuple[float, float, str]] = []  # (start, end, what), seconds since START


def timed(owner, name: str, what) -> None:
    """Wrap owner.name so that each call is marked (what: a label, or a function of the call's
    arguments giving one)."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        began = time.monotonic()
        try:
            return inner(*args, **kwargs)
        finally:
            label = what(*args, **kwargs) if callable(what) else what
            marks.append((began - START, time.monotonic() - START, label))

    setattr(owner, name, wrapper)


def command_label(connector, command, *args, **kwargs) -> str:
    text = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
    kind = "pre-run bundle" if text.startswith("d=$(mktemp -d)") else "verdict write" if "node-exporter" in text else "command"
    return f"{connector.host.name}: {kind}"


def install() -> None:
    """The hooks, before pyinfra's CLI runs."""
    from pyinfra.connectors.ssh import SSHConnector

    import operations.common
    import pyinfra_cli.cli

    marks.append((0.0, time.monotonic() - START, "python and pyinfra imported"))
    timed(SSHConnector, "connect", lambda connector, *a, **k: f"{connector.host.name}: connect")
    timed(SSHConnector, "run_shell_command", command_label)
    timed(pyinfra_cli.cli, "_prepare_deploy_operations", "deploy file run on every host (plan)")
    timed(pyinfra_cli.cli, "run_ops", "operations run (and the report)")  # the CLI's own name for it
    timed(operations.common, "_preflight", "preflight")


def table() -> str:
    """The marks in time order; the preflight's waits (every host but the first asks and waits
    for the first) kept only once."""
    lines, preflight = [], False
    for began, ended, what in sorted(marks):
        if what == "preflight":
            if preflight:
                continue
            preflight = True
        lines.append(f"  {began:6.3f} -> {ended:6.3f} s  {ended - began:6.3f} s  {what}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    install()
    from pyinfra_cli.main import main as pyinfra_main

    sys.argv = ["pyinfra", *argv]
    code = 0
    try:
        pyinfra_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(f"\nwhere the time went (seconds since this process started; ended at {time.monotonic() - START:.3f} s):\n"
          + table(), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
