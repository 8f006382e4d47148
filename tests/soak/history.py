"""The soak's history: JSON lines, one record per line, flushed as it is written (a run that
dies keeps what it saw). Four record types:

    {"type": "meta", "seed": 7, "accounts": {"0": 100, ...}, ...}      once, first (free-form)
    {"type": "invoke", "id": 12, "process": "append-3", "f": "txn", "value": V, "mono": m, "wall": w}
    {"type": "ok" | "fail" | "info", "id": 12, "process": ..., "f": ..., "value": V', "mono", "wall"}
    {"type": "fault", "fault": 3, "kind": "partition-halves", "phase": "start" | "end",
     "detail": {...}, "mono", "wall"}

`id` pairs a completion with its invocation. `mono` is time.monotonic() of the recording
process (the checker's clock), `wall` time.time() (for the reader). Outcomes, as Jepsen's:
ok = it happened (acknowledged), fail = it certainly did not, info = unknown (a timeout, a
connection lost mid-commit): the checker lets an info operation have happened or not.

The operations (f, value at invocation -> value at completion):
    txn       [["r", k, None] | ["append", k, e], ...] -> the reads filled in: ["r", k, [e, ...]]
              (list-append; each e is unique for its key across the run)
    transfer  {"from": a, "to": b, "amount": n}          -> the same
    read      None                                       -> {account: balance} of every account
    publish   message id                                 -> the same (ok = confirmed by the broker)
    consume   None                                       -> {"msg": id, "redelivered": bool} (acked)
    api       {"call": "token" | ...}                    -> the same (a keystone call)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable

OUTCOMES = ("ok", "fail", "info")


class Op:
    """An invoked operation: complete it once with Recorder.ok/fail/info."""

    __slots__ = ("id", "process", "f", "value", "done")

    def __init__(self, ident: int, process: str, f: str, value: Any):
        self.id, self.process, self.f, self.value, self.done = ident, process, f, value, False


class Recorder:
    """Thread-safe writer of one history. Workload threads call invoke() before they send an
    operation and ok()/fail()/info() when they know its outcome; the nemesis calls
    fault_start()/fault_end() around each fault. `clock` and `wall` are injectable (tests)."""

    def __init__(self, path: str | Path | None, meta: dict | None = None, clock=time.monotonic, wall=time.time):
        self.records: list[dict] = []
        self._file = open(path, "w", encoding="utf-8") if path else None
        self._lock = threading.Lock()
        self._clock, self._wall = clock, wall
        self._next_op = self._next_fault = 0
        self._write({"type": "meta", **(meta or {})})

    def _write(self, record: dict) -> dict:
        with self._lock:
            if record["type"] != "meta":
                record.update(mono=self._clock(), wall=self._wall())
            self.records.append(record)
            if self._file:
                self._file.write(json.dumps(record, sort_keys=True) + "\n")
                self._file.flush()
        return record

    def invoke(self, process: str, f: str, value: Any = None) -> Op:
        with self._lock:
            self._next_op += 1
            op = Op(self._next_op, process, f, value)
        self._write({"type": "invoke", "id": op.id, "process": process, "f": f, "value": value})
        return op

    def _complete(self, op: Op, outcome: str, value: Any, error: str | None) -> None:
        if op.done:
            raise ValueError(f"operation {op.id} ({op.f} by {op.process}) completed twice")
        op.done = True
        record = {"type": outcome, "id": op.id, "process": op.process, "f": op.f,
                  "value": op.value if value is None else value}
        if error:
            record["error"] = error[:300]
        self._write(record)

    def ok(self, op: Op, value: Any = None) -> None:
        self._complete(op, "ok", value, None)

    def fail(self, op: Op, error: str = "") -> None:
        self._complete(op, "fail", None, error)

    def info(self, op: Op, error: str = "") -> None:
        self._complete(op, "info", None, error)

    def fault_start(self, kind: str, **detail) -> int:
        with self._lock:
            self._next_fault += 1
            fault = self._next_fault
        self._write({"type": "fault", "fault": fault, "kind": kind, "phase": "start", "detail": detail})
        return fault

    def fault_end(self, fault: int, kind: str) -> None:
        self._write({"type": "fault", "fault": fault, "kind": kind, "phase": "end", "detail": {}})

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def load(path: str | Path) -> list[dict]:
    """The records of a saved history; a clear error names the line that is not a record."""
    records = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg}); a history has one JSON record per line") from None
        if not isinstance(record, dict) or record.get("type") not in ("meta", "invoke", "fault", *OUTCOMES):
            raise ValueError(f"{path}:{n}: not a history record (type meta, invoke, ok, fail, info or fault)")
        records.append(record)
    return records


def dump(records: Iterable[dict], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
