"""tests/soak/timeline.py: the soak's picture from a history, offline."""

from __future__ import annotations

import re

import pytest

from tests.soak import timeline
from tests.soak.history import Recorder


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def history() -> list[dict]:
    """10 s: writes acknowledged in seconds 0-2 and 6-9, failing in 3-5 under fault 1
    (power-cut-writer, 3-6 s); messages all along; no keystone."""
    clock = Clock()
    rec = Recorder(None, clock=clock, wall=clock)
    for second in range(10):
        clock.t = 100.0 + second + 0.1
        op = rec.invoke("append-0", "txn", [["append", 1, second]])
        if second == 3:
            fault = rec.fault_start("power-cut-writer")
        if 3 <= second <= 5:
            rec.fail(op)
        else:
            rec.ok(op, op.value)
        m = rec.invoke("publish", "publish", second)
        rec.ok(m, second)
        if second == 6:
            rec.fault_end(fault, "power-cut-writer")
    return rec.records


def test_buckets_count_acknowledgements_and_failures_per_second():
    lanes = timeline.buckets(history())
    acks, fails = lanes["SQL writes"]
    assert sorted(acks) == [0, 1, 2, 6, 7, 8, 9] and sorted(fails) == [3, 4, 5]
    assert sum(lanes["messages"][0].values()) == 10 and not lanes["keystone"][0]


def test_faults_are_spans_with_their_kind():
    assert timeline.faults(history()) == [(1, "power-cut-writer", pytest.approx(3.0), pytest.approx(6.0))]


def test_the_picture_marks_the_gap_shades_the_fault_and_omits_an_empty_lane():
    text = timeline.svg(history(), title="t")
    assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
    assert "1 power-cut-writer" in text
    assert len(re.findall(timeline.COLOURS["gap"], text)) == 3  # seconds 3, 4, 5: failed, none acknowledged
    assert len(re.findall(timeline.COLOURS["ok"], text)) == 7 + 10  # the writes' seconds and the messages'
    assert ">SQL writes<" in text and ">messages<" in text and ">keystone<" not in text


def test_a_history_without_timed_records_is_refused():
    with pytest.raises(ValueError, match="no timed record"):
        timeline.svg([{"type": "meta"}])
