"""make bench-failover: what a client of the VIP loses when a controller or a service fails.

For each fault, on a deployed lab with the API stand-ins (lab/backends.py), while two paced,
bounded client loops run through the VIP - HTTP GETs to an API (20/s, one connection each,
1 s timeout) and database writes (10/s, a long-lived session that reconnects when it is
closed or a write gets no answer in 5 s, as a connection pool does) - it prints: seconds
until another node held the VIP, the client-visible outage window for HTTP and for DB writes
(the longest span from a failed request to the next success), failed requests, and whether
every acknowledged write is in the database afterwards. The lab is restored (every node on,
health report OK) after each fault. Figures, not assertions.

Faults: HAProxy stopped on the VIP holder; the holder's power cut; the holder's link cut; the
active database node's power cut (with the VIP elsewhere).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills  # noqa: E402

API_PORT = 5000
TABLE = "bench_failover"
OBSERVE_MAX = 90.0  # s of client loops per fault, at most
SETTLE = 8.0  # s of clean traffic after the last failure before a fault's loops stop
MAX_HTTP = 6000  # requests per fault, at most
MAX_WRITES = 3000
HTTP_PERIOD = 0.05  # s between the starts of two HTTP requests (20/s)
DB_PERIOD = 0.1  # s between the starts of two writes (10/s)
DB_READ_TIMEOUT = 5.0  # s a write may take before the client gives its connection up


@dataclass
class Loop:
    """One client loop's record: (start time, ok) per request, acknowledged write ids."""

    name: str
    events: list = field(default_factory=list)
    acked: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def failed(self) -> int:
        return sum(1 for _, ok in self.events if not ok)

    def outage(self) -> float:
        """The longest span from a failed request to the next successful one (0: none failed)."""
        worst, first_fail = 0.0, None
        for t, ok in self.events:
            if not ok and first_fail is None:
                first_fail = t
            elif ok and first_fail is not None:
                worst = max(worst, t - first_fail)
                first_fail = None
        if first_fail is not None and self.events:
            worst = max(worst, self.events[-1][0] - first_fail)
        return worst

    def last_failure(self) -> float | None:
        fails = [t for t, ok in self.events if not ok]
        return fails[-1] if fails else None


def paced(t: float, period: float) -> None:
    """Sleep until `period` s after `t`: requests start at a steady rate, failed or not."""
    rest = t + period - time.monotonic()
    if rest > 0:
        time.sleep(rest)


def http_loop(loop: Loop) -> None:
    while not loop.stop.is_set() and len(loop.events) < MAX_HTTP:
        t = time.monotonic()
        try:
            drills.http_get(API_PORT, timeout=1)
            loop.events.append((t, True))
        except Exception:  # noqa: BLE001 - any failure is a failed request
            loop.events.append((t, False))
        paced(t, HTTP_PERIOD)


def db_loop(loop: Loop, client: str) -> None:
    session = None
    while not loop.stop.is_set() and len(loop.events) < MAX_WRITES:
        t = time.monotonic()
        try:
            if session is None:
                session = drills.Session()
            _, ident = drills.write(session, TABLE, client, timeout=DB_READ_TIMEOUT)
            loop.events.append((t, True))
            loop.acked.append(ident)
        except (drills.SessionClosed, OSError):
            # closed by the server, or no answer within the client's read timeout: reconnect
            loop.events.append((t, False))
            if session is not None:
                session.close()
            session = None
        paced(t, DB_PERIOD)
    if session is not None:
        session.close()


def run_fault(name: str, inject, heal=None, vip_moves: bool = True) -> dict:
    """Client loops on, the fault injected, loops until quiet or OBSERVE_MAX, heal(), restore."""
    http = Loop("http")
    db = Loop("db")
    threads = [threading.Thread(target=http_loop, args=(http,), daemon=True),
               threading.Thread(target=db_loop, args=(db, name[:30]), daemon=True)]
    for th in threads:
        th.start()
    time.sleep(3)  # clean traffic first
    before = drills.holder()
    t0 = time.monotonic()
    inject(before)
    vip_moved = None
    new = before
    if vip_moves:
        try:
            new, _ = drills.wait_holder(30, other_than=(before,))
            vip_moved = time.monotonic() - t0
        except drills.DrillError:
            new = drills.holder()
    # loops run until SETTLE s without a failure in both, at most OBSERVE_MAX
    while time.monotonic() - t0 < OBSERVE_MAX:
        last = max([x for x in (http.last_failure(), db.last_failure()) if x is not None] or [t0])
        if time.monotonic() - max(last, t0) > SETTLE and time.monotonic() - t0 > SETTLE:
            break
        time.sleep(0.5)
    for loop in (http, db):
        loop.stop.set()
    for th in threads:
        th.join(timeout=30)
    if heal:
        heal(before)
    seen = len(drills.interventions)
    drills.restore()
    restore_notes = [text for _, text in drills.interventions[seen:]]
    ids = {int(x) for x in drills.sql(f"SELECT id FROM {drills.WRITES_DB}.{TABLE}").split()}
    lost = [i for i in db.acked if i not in ids]
    if vip_moves:
        name = f"{name} ({before}{', the DB writer' if before == 'node01' else ''})"
    return {
        "fault": name, "holder": before, "new_holder": new, "vip_moved": vip_moved,
        "http_outage": http.outage(), "http_failed": http.failed, "http_total": len(http.events),
        "db_outage": db.outage(), "db_failed": db.failed, "db_total": len(db.events),
        "acked": len(db.acked), "lost": len(lost), "restore_notes": restore_notes,
    }


def fmt(x, unit="s") -> str:
    return "-" if x is None else f"{x:.1f} {unit}"


def main() -> int:
    lab.up(3)
    run = drills.deploy()
    if run.returncode != 0:
        print(run.stdout[-4000:])
        raise SystemExit("bench-failover: the deploy failed")
    run = backends.install()
    if run.returncode != 0:
        print(run.stdout[-4000:])
        raise SystemExit("bench-failover: the API stand-ins did not install")
    drills.wait_healthy(120)
    drills.prepare_writes(TABLE)

    faults = [
        ("haproxy stopped on the VIP holder", lambda h: drills.systemctl(h, "stop", "haproxy"), None),
        ("VIP holder power cut", lambda h: drills.power_cut(h), None),
        ("VIP holder link cut", lambda h: lab.isolate(h), lambda h: lab.heal(h)),
    ]
    results = []
    for name, inject, heal in faults:
        drills.log(f"bench: {name}")
        results.append(run_fault(name, inject, heal))
    # the active database node (node01) loses power while the VIP is elsewhere
    drills.log("bench: active database node power cut")
    if drills.holder() == "node01":
        drills.place_vip("node02")
    results.append(run_fault("active DB node (node01) power cut, VIP elsewhere",
                             lambda h: drills.power_cut("node01"), vip_moves=False))

    print()
    print(f"{'fault':<62} {'VIP moved':>10} {'HTTP outage':>12} {'HTTP failed':>12} "
          f"{'DB outage':>10} {'DB failed':>10} {'acked writes':>13} {'lost':>5}")
    for r in results:
        print(f"{r['fault']:<62} {fmt(r['vip_moved']):>10} {fmt(r['http_outage']):>12} "
              f"{r['http_failed']:>5}/{r['http_total']:<6} {fmt(r['db_outage']):>10} "
              f"{r['db_failed']:>4}/{r['db_total']:<5} {r['acked']:>13} {r['lost']:>5}")
    for r in results:
        for note in r["restore_notes"]:
            print(f"  restoring after '{r['fault']}': {note}")
    print("\nVIP moved: seconds from the fault until another node held the VIP ('-': it did not "
          "have to move).\nOutage: the longest span from a failed request to the next success, "
          "as the client saw it.\nlost: acknowledged writes missing from the database afterwards "
          "(every one must be there).")
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
