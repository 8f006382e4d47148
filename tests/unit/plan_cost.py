"""What a no-op deploy costs in Python, offline: the local side of issue 22 (no lab, no host).

tests/unit/operations/site/deployed.json (a deployed lab's facts) planned as opkit.run() plans
it: every component of the case on every host, then each operation's commands generated (none:
a no-op), with pyinfra's real State and API. The case's setup (facts resolved from the rendered
site) is outside the timing: a real run reads its facts from the hosts.

    nice -n 19 .venv/bin/python tests/unit/plan_cost.py [runs] [--profile]

prints the number of host-operations and the median of `runs` plans (default 5): the CPU
seconds of this process (time.process_time: steady while other work loads the machine) and
the wall time; then the first plan of the process alone (what one pyinfra run pays: templates
compiled, preflight's local openssl checks, whose CPU is its child processes'); --profile prints cProfile's top functions of one more run (cumulative,
--tottime: by own time).
"""

from __future__ import annotations

import cProfile
import importlib
import pstats
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import opkit  # noqa: E402
from pyinfra.context import ctx_host  # noqa: E402

CASE = opkit.CASES / "site" / "deployed.json"


def plan_once(case: dict, prof: cProfile.Profile | None = None) -> tuple[float, float, int, int]:
    """(CPU seconds, wall seconds to plan and generate every host's commands, host-operations,
    commands); `prof` profiles that part alone."""
    with opkit.planning(case) as (state, inventory):
        modules = [importlib.import_module(f"operations.{c}") for c in case["components"]]
        if prof:
            prof.enable()
        start, cpu = time.perf_counter(), time.process_time()
        for h in inventory:
            with ctx_host.use(h):
                for module in modules:
                    module.configure()
        ops = commands = 0
        for h in inventory:
            with ctx_host.use(h):
                for op_hash in state.get_op_order():
                    if op_hash in state.ops[h]:
                        ops += 1
                        commands += len(list(state.get_op_data_for_host(h, op_hash).command_generator()))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if prof:
            prof.disable()
        return cpu, seconds, ops, commands


def main(argv: list[str]) -> None:
    runs = int(next((a for a in argv if a.isdigit()), 5))
    case = opkit.load_case(CASE)
    # The first plan of the process is what a pyinfra run pays: jinja2 compiles each template
    # once per process, preflight checks the VIP certificate with local openssl processes once
    # (lru_cache; their CPU is the children's).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cold_cpu, cold_wall, *_ = plan_once(case)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    cpus, times = [], []
    for _ in range(runs):
        cpu, seconds, ops, commands = plan_once(case)
        cpus.append(cpu)
        times.append(seconds)
    print(f"{CASE.relative_to(opkit.CASES)}: {ops} host-operations, {commands} commands; plan of {runs}: "
          f"CPU median {statistics.median(cpus):.3f} s (min {min(cpus):.3f}), wall median {statistics.median(times):.3f} s; "
          f"first plan of the process: CPU {cold_cpu:.3f} s, its child processes' CPU {children:.3f} s, wall {cold_wall:.3f} s")
    if "--profile" in argv:
        prof = cProfile.Profile()
        plan_once(case, prof)
        pstats.Stats(prof).sort_stats("tottime" if "--tottime" in argv else "cumulative").print_stats(60)


if __name__ == "__main__":
    main(sys.argv[1:])
