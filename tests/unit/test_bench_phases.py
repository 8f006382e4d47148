"""tests/bench/phases.py: the table of where a run's time went (no lab: the marks given)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import phases  # noqa: E402


def test_the_table_is_in_time_order_with_the_preflight_once(monkeypatch):
    monkeypatch.setattr(phases, "marks", [(0.6, 0.72, "preflight"), (0.0, 0.39, "python and pyinfra imported"),
                                          (0.61, 0.79, "preflight"), (0.77, 1.43, "node01: pre-run bundle")])
    lines = phases.table().splitlines()
    assert [line.split("  ")[-1] for line in lines] == ["python and pyinfra imported", "preflight", "node01: pre-run bundle"]
    assert "0.600 ->  0.720 s   0.120 s" in lines[1]


def test_commands_are_named_by_what_they_are():
    class Host:
        name = "node02"

    class Connector:
        host = Host()

    assert phases.command_label(Connector(), "d=$(mktemp -d) || exit 1; ...") == "node02: pre-run bundle"
    assert phases.command_label(Connector(), "tmp=$(mktemp /var/lib/prometheus/node-exporter/.x)") == "node02: verdict write"
    assert phases.command_label(Connector(), "true") == "node02: command"
