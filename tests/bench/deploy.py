"""make bench-deploy: where a deploy's time goes, on the lab.

Prints the wall time of a first deploy onto fresh nodes (warm apt cache), of a no-op re-run
(median of 3), per host the operations, facts and remote commands of a no-op run, and where one
more no-op's time went (tests/bench/phases.py: preflight, each pre-run bundle, planning, the
operations and the report); then
the same no-op figures with 5 nodes (node04 and node05 are added to the running clusters by a
deploy first). Figures, not assertions. The lab is left down with its disks purged.

The floor, measured in the same run before each no-op: `pyinfra SITE exec -- true` (one
connection and one command per host), median of 3. Targets (issue 11): a no-op deploy,
health report included, within 2x the floor on 3 nodes, and within 1.3x of its own 3-node
time on 5 nodes; first deploy < 3 min.

    make bench-deploy                                   the whole bench (fresh lab, ~10 min)
    python -m tests.bench.deploy --noop                 floor and no-op only, on the lab as it
                                                        is (deployed; left as it is)
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from tests.bench import records  # noqa: E402

PYINFRA = str(Path(sys.executable).parent / "pyinfra")


def run(*args) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(
        [PYINFRA, *args], cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise SystemExit(f"bench: `pyinfra {' '.join(args)}` failed (exit {proc.returncode})")
    return elapsed, proc.stdout


def per_host(output: str) -> dict[str, Counter]:
    """Remote commands ('>>>' lines) and facts loaded, per host, from a -vv run."""
    counts: dict[str, Counter] = {}
    for line in output.splitlines():
        m = re.match(r"\s*\[(node\d+)\] (>>>|Loaded fact)", line)
        if m:
            counts.setdefault(m.group(1), Counter())[m.group(2)] += 1
    return counts


def operations(output: str) -> int:
    m = re.search(r"Grand total\s+(\d+)", output)
    return int(m.group(1)) if m else -1


def floor() -> float:
    """Median of 3 `exec -- true`: what one connection and one command per host cost."""
    return statistics.median(run("-y", "inventories/lab.py", "exec", "--", "true")[0] for _ in range(3))


def noop_figures(nodes: int) -> float:
    # The project's modules compiled ahead, as `make venv` leaves them: pyinfra's CLI never writes
    # bytecode, so without it each run also compiles them (~0.1 s), which no operator's run should.
    subprocess.run(["make", "-s", "venv"], cwd=ROOT, check=True, stdin=subprocess.DEVNULL)
    base = floor()
    times = [run("-y", "inventories/lab.py", "deploy.py")[0] for _ in range(3)]
    _, verbose = run("-y", "-vv", "inventories/lab.py", "deploy.py")
    ops = operations(verbose)
    median = statistics.median(times)
    print(f"\nno-op re-run, {nodes} nodes: median {median:.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}); {ops} host-operations in all")
    print(f"  floor (exec -- true, median of 3): {base:.2f} s; no-op / floor: {median / base:.2f}x (target <= 2x)")
    print(f"  {'host':8} {'remote commands':>16} {'facts loaded':>13}")
    for host, c in sorted(per_host(verbose).items()):
        print(f"  {host:8} {c['>>>']:>16} {c['Loaded fact']:>13}")
    print(phases())
    path = records.append("deploy", f"commit {records.commit()[:7]}", config(nodes),
                          {"nodes": nodes, "noop_s": times, "floor_s": base, "host_operations": ops})
    print(f"  recorded in {path.relative_to(ROOT)}")
    return statistics.median(times)


def phases() -> str:
    """Where one more no-op's wall time went (tests/bench/phases.py), its table as printed."""
    proc = subprocess.run([sys.executable, "-m", "tests.bench.phases", "-y", "inventories/lab.py", "deploy.py"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the timed no-op failed (exit {proc.returncode}): {proc.stdout[-2000:]}")
    return proc.stderr[proc.stderr.find("\nwhere the time went"):].rstrip()


def config(nodes: int) -> dict:
    """What a record of this bench ran under."""
    return {"bench": "tests/bench/deploy.py", "where": f"the lab: {nodes} nodes (inventories/lab.py) on a "
            f"{os.cpu_count()}-core machine", "no-op": "pyinfra -y inventories/lab.py deploy.py, health report included",
            "floor": "pyinfra -y inventories/lab.py exec -- true, median of 3",
            "bytecode": "the project's modules compiled ahead (make venv)"}


def main() -> int:
    if "--noop" in sys.argv[1:]:
        noop_figures(len(lab.node_names()))
        return 0
    print("bench-deploy: fresh lab of 3 nodes (disks purged, apt cache kept)")
    lab.down(purge=True)
    try:
        start = time.monotonic()
        lab.up(3)
        print(f"lab up (3 fresh nodes): {time.monotonic() - start:.1f} s")
        first, _ = run("-y", "inventories/lab.py", "deploy.py")
        print(f"first deploy onto 3 fresh nodes: {first:.1f} s (target < 180 s)")
        three = noop_figures(3)

        lab.up(5)
        grow, _ = run("-y", "inventories/lab.py", "deploy.py")
        print(f"\ndeploy adding node04 and node05 to the running clusters: {grow:.1f} s")
        five = noop_figures(5)
        print(f"  5 nodes / 3 nodes: {five / three:.2f}x (target <= 1.3x)")
        records.append("deploy", "first deploy and adding two controllers",
                       {**config(3), "first deploy": "onto 3 fresh nodes", "apt cache": "warm"},
                       {"first_deploy_s": first, "grow_s": grow, "grow_nodes": ["node04", "node05"]})
    finally:
        lab.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
