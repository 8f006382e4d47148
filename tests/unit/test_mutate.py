"""tests/mutate.py, the mutation runner of the decision tables, on a fixture module and its
fixture test in a temporary tree: it must report a mutant no row pins down (a survivor, with
file:line and the change) and must not report one a row kills."""

from __future__ import annotations

import ast
import textwrap

from tests import mutate

MODULE = '''\
"""A decision with a boundary row and one without."""
import re

NAME = re.compile(r"[a-z]{1,15}")
TIME = re.compile(r"[1-9][0-9]*s")


def allowed(n):
    return n >= 3


def big(n):
    return n > 10 and True
'''

TESTS = '''\
from dec import NAME, TIME, allowed, big


def test_allowed_at_its_edge():
    assert allowed(3) and not allowed(2)


def test_big_far_from_its_edge():
    assert big(100) and not big(0)


def test_the_longest_name():
    assert NAME.fullmatch("a" * 15) and not NAME.fullmatch("a" * 16)


def test_no_zero_time():
    assert TIME.fullmatch("1s") and not TIME.fullmatch("0s")
'''


def tree(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "dec.py").write_text(MODULE)
    (root / "test_dec.py").write_text(TESTS)
    return root


def test_the_mutants_of_a_module():
    found = {(m.line, m.change) for m in mutate.mutants("dec.py", MODULE)}
    assert found == {(4, "{1,15} -> {1,16}"), (4, "{1,15} -> {1,14}"), (5, "[1-9] -> [0-9]"),
                     (9, ">= -> >"), (9, "3 -> 4"), (9, "3 -> 2"),
                     (13, "> -> >="), (13, "10 -> 11"), (13, "10 -> 9"), (13, "and -> or"), (13, "True -> False")}
    # each mutant is one change of the source, which still parses
    for m in mutate.mutants("dec.py", MODULE):
        changed = mutate.apply(MODULE, m)
        ast.parse(changed)
        assert changed != ast.unparse(ast.parse(MODULE)) + "\n", m


def test_a_survivor_is_reported_and_a_covered_mutation_is_not(tmp_path):
    lines = []
    results, errors = mutate.run(tree(tmp_path), {"dec.py": ("test_dec.py",)}, jobs=2, timeout=60,
                                 equivalent={("dec.py", "return n > 10 and True", "10 -> 9"): "made up for the test"},
                                 log=lines.append)
    assert errors == []
    outcome = {(r.mutant.line, r.mutant.change): r.outcome for r in results}
    # big() has no row at 10 or 11: its boundary mutants survive (10 -> 9 is listed as equivalent)
    assert {k for k, v in outcome.items() if v == "survived"} == {(13, "> -> >="), (13, "10 -> 11")}
    assert outcome[(13, "10 -> 9")] == "equivalent"
    # allowed() has its edge row, the name its longest, big() its far rows: killed
    assert all(outcome[k] == "killed" for k in outcome if k[0] in (4, 5, 9))
    assert outcome[(13, "and -> or")] == outcome[(13, "True -> False")] == "killed"
    text = mutate.report(results)
    assert "SURVIVED dec.py:13: > -> >=    return n > 10 and True" in text
    assert "dec.py:9" not in text and "10 -> 9" not in text
    assert any("dec.py: 11 mutants, 8 killed, 2 survived, 1 equivalent" in line for line in lines), lines


def test_a_module_whose_tests_fail_unmutated_is_an_error(tmp_path):
    root = tree(tmp_path)
    (root / "test_dec.py").write_text(TESTS + "\n\ndef test_broken():\n    assert False\n")
    results, errors = mutate.run(root, {"dec.py": ("test_dec.py",), "absent.py": ("test_absent.py",)}, jobs=1,
                                 log=lambda _: None)
    assert results == [] and len(errors) == 1 and "fail without any mutation" in errors[0]


def test_the_targets_are_the_decision_modules_with_their_tests():
    assert {"operations/galera_plan.py", "operations/maintenance_plan.py", "config/schema.py",
            "health/checks.py", "operations/rabbitmq_plan.py", "operations/upgrade_plan.py", "operations/backup_plan.py",
            "operations/peer_tls_plan.py", "health/backup.py", "operations/rehearsal_plan.py",
            "config/rehearsal.py"} <= set(mutate.TARGETS)
    for module, tests in mutate.TARGETS.items():
        if (mutate.ROOT / module).exists():
            assert tests and all((mutate.ROOT / t).is_file() for t in tests), module
    for (module, source, change), why in mutate.EQUIVALENT.items():
        assert module in mutate.TARGETS and why, (module, source, change)
        text = textwrap.dedent((mutate.ROOT / module).read_text())
        assert any(m.source == source and m.change == change for m in mutate.mutants(module, text)), (
            f"EQUIVALENT lists a mutant {module} no longer has: {source} ({change})")
