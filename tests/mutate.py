"""Mutation testing of the decision modules: can each row of their tables fail?

A decision table is only as good as its boundary rows: `>` where `>=` was meant, an even
number of controllers, zero, the longest legal name. This runner changes one thing at a time
in a decision module, on a copy of the tree, and runs that module's unit tests (-x -q). A
mutant the tests let pass (a survivor) is a decision no row pins down: add the row, or, when
the mutant behaves exactly as the original (an equivalent mutant), list it in EQUIVALENT
below with why.

Mutations (stdlib ast, one at a time; docstrings and decorators are left alone):
- comparison operators at their boundary: < <=, > >=, == != (each into the other);
- `and` into `or` and back;
- an integer constant +1 and -1; True into False and back;
- the upper bound of a regex quantifier {m,n} in a string constant, +1 and -1 (the schema's
  limits are regexes: an interface name of at most 15 characters is `{1,15}`), and a regex's
  `[1-9]` into `[0-9]` (zero allowed: "0s" is no HAProxy timeout).

    python -m tests.mutate                       # every module of TARGETS (make mutate)
    python -m tests.mutate config/schema.py      # one module
    python -m tests.mutate --list config/schema.py   # the mutants, nothing run

Exit status: 0 when no unexplained mutant survived, 1 otherwise, 2 when a module's tests
fail without any mutation. The tests run under nice -n 19 (make mutate), on `--jobs` copies.
"""

from __future__ import annotations

import argparse
import ast
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The decision modules and the unit tests that check them. A module not in the tree yet is
# skipped (operations/rabbitmq_plan.py is written on another branch).
TARGETS: dict[str, tuple[str, ...]] = {
    "operations/galera_plan.py": ("tests/unit/test_galera_plan.py",),
    "operations/maintenance_plan.py": ("tests/unit/test_maintenance.py",),
    "config/schema.py": ("tests/unit/test_schema.py",),
    "health/checks.py": ("tests/unit/test_health.py", "tests/unit/test_health_cluster.py",
                         "tests/unit/test_health_tls.py"),
    "health/haproxy.py": ("tests/unit/test_health.py", "tests/unit/test_health_cluster.py"),
    "facts/galera_rules.py": ("tests/unit/test_galera_plan.py", "tests/unit/test_health_cluster.py",
                              "tests/unit/test_maintenance.py"),
    "operations/rabbitmq_plan.py": ("tests/unit/test_rabbitmq_plan.py", "tests/unit/test_peer_tls.py"),
    "facts/rabbitmq_rules.py": ("tests/unit/test_rabbitmq_plan.py", "tests/unit/test_health_cluster.py"),
    "operations/upgrade_plan.py": ("tests/unit/test_upgrade_plan.py", "tests/unit/test_upgrade_turns.py"),
    "operations/backup_plan.py": ("tests/unit/test_backup_plan.py", "tests/unit/test_backup_restore.py"),
    "operations/peer_tls_plan.py": ("tests/unit/test_peer_tls.py",),
    "health/backup.py": ("tests/unit/test_health_backup.py",),
    "operations/rehearsal_plan.py": ("tests/unit/test_rehearsal_plan.py", "tests/unit/test_rehearsal_run.py"),
    "config/rehearsal.py": ("tests/unit/test_rehearsal_plan.py",),
}

# Equivalent mutants: (module, the original source line stripped, the mutation as reported) ->
# why no test can tell it from the original. Keyed by text, not line number, so that edits
# elsewhere in the module do not invalidate it.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    **{("operations/rabbitmq_plan.py", "left: int = 0  # brokers left running during one node's rolling restart", change):
       "`left` is only printed (operations/rabbitmq.py's deferral message) and plan() always gives it; the one "
       "Plan built by hand without it (test_peer_tls) is never printed: the default is never read"
       for change in ("0 -> -1", "0 -> 1")},
    **{("facts/galera_rules.py", 'sizes = [int(states[n].get("wsrep_cluster_size") or 0) for n in nodes]', change):
       "a missing size only ever meets max() with len(members), at least 1 (members is at least the node "
       "itself): 0, -1 and 1 give the same size" for change in ("0 -> -1", "0 -> 1")},
    ("operations/galera_plan.py", "if len(with_state) == 1 and not unanswered(states[with_state[0]]):", "0 -> -1"):
        "with_state has exactly one element here: [0] and [-1] are the same node",
    ("operations/galera_plan.py", "n = with_state[0]", "0 -> -1"):
        "under len(with_state) == 1: [0] and [-1] are the same node",
    ("health/checks.py", 'row = Check(name, OK, f"{holders[0]} holds {vip}")', "0 -> -1"):
        "under len(holders) == 1: [0] and [-1] are the same holder",
    **{("config/schema.py", 'TIME_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, '
        '"d": 86_400_000}', change): "no whole count of that unit lies between 2^31-1 ms divided by the factor and "
       "by the factor +-1 (e.g. 35791 m is under the limit with 59999 and 60000, 35792 m above with both): the limit "
       "check refuses the same counts" for change in ("60000 -> 59999", "3600000 -> 3599999", "3600000 -> 3600001",
                                                     "86400000 -> 86399999", "86400000 -> 86400001")},
    ("config/schema.py", "if type(v) is int and v > TIME_LIMIT_MS:", "> -> >="):
        "an integer at the limit already passed plain.why() above: this line only sees v outside 1..limit",
    ("operations/upgrade_plan.py", "if Version(wanted) < Version(installed):", "< -> <="):
        "an installed version equal to the pin was skipped above (`continue`): here they differ, < and <= agree",
    ("operations/upgrade_plan.py", 'if name not in flags or (f.get("state") != "enabled" and not _blocks(flags[name])) '
     'or _blocks(f):', "!= -> =="):
        "the merged flags are read only through _blocks(): a stored flag that blocks is replaced only by one that "
        "blocks, with or without the middle clause, so a flag blocks iff some node's does; the clause only picks "
        "which non-blocking dict is kept (every stability x state on 1-3 nodes checked alike)",
    ("operations/upgrade_plan.py", "AWAY = 2", "2 -> 3"):
        "any marker value but 0 is FAULT to keepalived and only 1 is maintenance to the Maintenance fact: 3 acts as 2",
    **{("operations/backup_plan.py", 'what = f"the last full {sized.id}\'s {_mib(base)}" if sized and sized.artifact_bytes is not None else f"the datadir\'s {_mib(base or 0)}"', change): "`what` is said only when free_bytes < need, which needs a "
       "base; a base of 0 needs 0 bytes and is never short: `base or 0` never shows" for change in ("0 -> 1", "0 -> -1")},
    ("config/schema.py", "if net.num_addresses < 4:", "4 -> 3"):
        "a network's size is a power of two: none has 3 addresses, so < 3 and < 4 refuse the same (/31, /32)",
}

# Not copied into the scratch trees: large, generated, or state.
SKIP_COPY = (".git", ".venv", "__pycache__", ".pytest_cache", "out", "render", ".lab", "*.pyc")

COMPARE_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
OP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
QUANTIFIER = re.compile(r"\{(\d+),(\d+)\}")
NONZERO = "[1-9]"  # a regex's first digit that may not be 0 ("0s" is no HAProxy timeout)


@dataclass(frozen=True)
class Mutant:
    module: str  # path relative to the root
    index: int  # the node's position in ast.walk order
    kind: str  # "compare", "boolop", "int", "bool", "quantifier"
    arg: int  # compare: which operator; int/quantifier: +1 or -1 (quantifier: and which match * 2)
    line: int
    source: str  # the original source line, stripped
    change: str  # e.g. "> -> >=" or "15 -> 16"

    @property
    def where(self) -> str:
        return f"{self.module}:{self.line}"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of docstring constants: text, never mutated."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _decorations(tree: ast.AST) -> set[int]:
    """ids of the nodes inside decorators (`@dataclass(frozen=True)`): structure, not a
    decision, never mutated."""
    out = set()
    for node in ast.walk(tree):
        for d in getattr(node, "decorator_list", ()):
            out.update(id(x) for x in ast.walk(d))
    return out


def mutants(module: str, source: str) -> list[Mutant]:
    """Every single mutation of `source`, in a stable order."""
    tree = ast.parse(source)
    lines = source.splitlines()
    docs = _docstrings(tree)
    skip = _decorations(tree)
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        text = lines[line - 1].strip() if line else ""

        def add(kind, arg, change):
            out.append(Mutant(module, i, kind, arg, line, text, change))

        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in COMPARE_FLIP:
                    add("compare", j, f"{OP_TEXT[type(op)]} -> {OP_TEXT[COMPARE_FLIP[type(op)]]}")
        elif isinstance(node, ast.BoolOp):
            add("boolop", 0, "and -> or" if isinstance(node.op, ast.And) else "or -> and")
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            add("bool", 0, f"{node.value} -> {not node.value}")
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            for d in (1, -1):
                add("int", d, f"{node.value} -> {node.value + d}")
        elif isinstance(node, ast.Constant) and type(node.value) is str and id(node) not in docs:
            for k, m in enumerate(QUANTIFIER.finditer(node.value)):
                lo, hi = int(m.group(1)), int(m.group(2))
                for d in (1, -1):
                    if lo <= hi + d:
                        add("quantifier", k * 2 + (d < 0), f"{{{lo},{hi}}} -> {{{lo},{hi + d}}}")
            if NONZERO in node.value:
                add("nonzero", 0, f"{NONZERO} -> [0-9]")
    return out


def apply(source: str, m: Mutant) -> str:
    """`source` with the one mutation `m`, as Python source (ast.unparse: comments go, the
    behaviour stays)."""
    tree = ast.parse(source)
    node = list(ast.walk(tree))[m.index]
    if m.kind == "compare":
        node.ops[m.arg] = COMPARE_FLIP[type(node.ops[m.arg])]()
    elif m.kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif m.kind == "bool":
        node.value = not node.value
    elif m.kind == "int":
        node.value += m.arg
    elif m.kind == "nonzero":
        node.value = node.value.replace(NONZERO, "[0-9]", 1)
    elif m.kind == "quantifier":
        k, down = divmod(m.arg, 2)
        match = list(QUANTIFIER.finditer(node.value))[k]
        hi = int(match.group(2)) + (-1 if down else 1)
        node.value = node.value[:match.start()] + f"{{{match.group(1)},{hi}}}" + node.value[match.end():]
    return ast.unparse(tree) + "\n"


# A mutant's tests may not take more memory than this (address space): a mutated loop bound
# (`while path[-1] < b` turned around) grows a list without end, and on a 2-core machine with
# the lab on it that took 20 GB and stalled every node for ten minutes before the timeout came.
# Past the limit Python raises MemoryError: the tests fail, the mutant counts as killed.
MEMORY_LIMIT = 2 * 1024 ** 3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> str:
    """'passed', 'failed' or 'timeout': the module's unit tests in the scratch tree, each run
    bounded in time and in memory (MEMORY_LIMIT)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        rc = subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            timeout=timeout, preexec_fn=_limit_memory).returncode
    except subprocess.TimeoutExpired:
        return "timeout"
    return "passed" if rc == 0 else "failed"


@dataclass
class Result:
    mutant: Mutant
    outcome: str  # "killed", "timeout" (counted killed), "survived", "equivalent"
    why: str = ""


def run(root: Path, targets: dict[str, tuple[str, ...]], jobs: int = 2, timeout: float = 120,
        equivalent: dict | None = None, log=print) -> tuple[list[Result], list[str]]:
    """Every mutant of every target present under `root`; returns (results, errors), where an
    error is a module whose tests fail without any mutation (no mutant of it is run)."""
    equivalent = EQUIVALENT if equivalent is None else equivalent
    present = {m: t for m, t in targets.items() if (root / m).is_file()}
    for m in sorted(set(targets) - set(present)):
        log(f"mutate: {m} is not in the tree: skipped")
    results: list[Result] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        trees = []
        for k in range(max(1, jobs)):
            t = Path(tmp) / f"tree{k}"
            shutil.copytree(root, t, ignore=shutil.ignore_patterns(*SKIP_COPY), symlinks=True)
            trees.append(t)
        for module, tests in present.items():
            missing = [t for t in tests if not (root / t).is_file()]
            if missing:
                errors.append(f"{module}: its tests {', '.join(missing)} are not in the tree")
                continue
            if _run_tests(trees[0], tests, timeout) != "passed":
                errors.append(f"{module}: its tests fail without any mutation ({' '.join(tests)})")
                continue
            source = (root / module).read_text()
            todo: queue.Queue = queue.Queue()
            ms = mutants(module, source)
            for m in ms:
                todo.put(m)
            done: list[Result] = []
            lock = threading.Lock()
            start = time.monotonic()

            def worker(tree: Path):
                path = tree / module
                while True:
                    try:
                        m = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        path.write_text(apply(source, m))
                        outcome = _run_tests(tree, tests, timeout)
                    finally:
                        path.write_text(source)
                    why = equivalent.get((m.module, m.source, m.change), "")
                    r = Result(m, {"failed": "killed", "timeout": "timeout"}.get(outcome, "equivalent" if why else "survived"), why)
                    with lock:
                        done.append(r)

            threads = [threading.Thread(target=worker, args=(t,)) for t in trees]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            done.sort(key=lambda r: (r.mutant.line, r.mutant.index, r.mutant.arg))
            results += done
            count = {o: sum(r.outcome == o for r in done) for o in ("killed", "timeout", "survived", "equivalent")}
            log(f"mutate: {module}: {len(ms)} mutants, {count['killed'] + count['timeout']} killed, "
                f"{count['survived']} survived, {count['equivalent']} equivalent (listed), "
                f"{time.monotonic() - start:.0f} s")
    return results, errors


def report(results: list[Result]) -> str:
    lines = []
    for r in results:
        if r.outcome == "survived":
            lines.append(f"SURVIVED {r.mutant.where}: {r.mutant.change}    {r.mutant.source}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="modules of TARGETS to mutate (default: all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="scratch trees run in parallel")
    ap.add_argument("--timeout", type=float, default=120, help="seconds one test run may take (then killed)")
    ap.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        print(f"mutate: {', '.join(unknown)} not in TARGETS ({', '.join(TARGETS)}); add it there with its tests",
              file=sys.stderr)
        return 2
    targets = {m: TARGETS[m] for m in (args.modules or TARGETS)}
    if args.list:
        for m in targets:
            if (ROOT / m).is_file():
                for x in mutants(m, (ROOT / m).read_text()):
                    print(f"{x.where}: {x.change}    {x.source}")
        return 0
    start = time.monotonic()
    results, errors = run(ROOT, targets, jobs=args.jobs, timeout=args.timeout)
    text = report(results)
    if text:
        print(text)
    for e in errors:
        print(f"mutate: {e}", file=sys.stderr)
    survived = sum(r.outcome == "survived" for r in results)
    print(f"mutate: {len(results)} mutants, {survived} survived unexplained, {time.monotonic() - start:.0f} s")
    return 2 if errors else 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
