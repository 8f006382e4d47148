"""The short soak (issue 21; `make soak` runs the 30-minute one): the workloads through the
VIP (list-append transactions, bank transfers, AMQP with confirms and acks on a quorum queue)
while the nemesis injects a few faults of the kinds that cost the most (the writer's power
cut, a node cut off from the others, a paused mariadbd); then the checker: nothing
acknowledged lost, no anomaly, every recovery made by the layer or the deploy, never by the
lab's restore. The history and report stay in a temporary directory (printed on failure)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.soak import run

MINUTES = 2.5
KINDS = ("power-cut-writer", "partition-one", "pause-mariadbd")


def test_a_short_soak_loses_nothing_and_finds_no_anomaly(healthy, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        status = run.soak(MINUTES, seed=21, out=Path(tmp), only=KINDS)
        report = (Path(tmp) / "report.txt").read_text()
    last = report.strip().splitlines()[-1]
    assert last.startswith("soak: ") and " 0 lost, 0 anomalies" in last, report
    assert status == 0, report
    writes = int(last.split(" writes")[0].rsplit(" ", 1)[1])
    messages = int(last.split(" messages")[0].rsplit(" ", 1)[1])
    assert writes > 100 and messages > 100, report  # the workloads ran through the faults
