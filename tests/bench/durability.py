"""make bench-durability: what innodb_flush_log_at_trx_commit=1 costs against 2, on the lab.

For each value, the lab is deployed with `mariadb_innodb_flush_log_at_trx_commit` set to it
(a config change: mariadb restarts one node at a time, each rejoining before the next), then
through the VIP: one session doing sequential single-row autocommit INSERTs (latency per
write: median, p95, p99; writes per second), and 4 sessions doing the same at once for a
fixed time (writes per second in all). The lab is left deployed with the default (1).
Figures, not assertions.

What the figures mean: with 1 InnoDB flushes its redo log at every commit, with 2 it writes
it at commit and flushes once a second. Galera's replication round trip is part of every
write either way. The lab's nodes share this host's disk (overlay on /var/tmp) and kernel,
so the flush cost is this host's fsync cost; on controllers with a battery-backed or NVMe
write cache the gap is usually smaller, on plain disks larger.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import drills  # noqa: E402
from tests.bench import records  # noqa: E402

TABLE = "bench_durability"
SEQUENTIAL = 1000  # writes in the one-session run
CONCURRENT = 4  # sessions in the concurrent run
CONCURRENT_SECONDS = 15.0
VALUES = (1, 2)


def deploy_with(value: int) -> None:
    run = drills.deploy(data={"mariadb_innodb_flush_log_at_trx_commit": value})
    if run.returncode != 0:
        print(run.stdout[-4000:])
        raise SystemExit(f"bench-durability: the deploy with flush_log_at_trx_commit={value} failed")
    for n in drills.running():
        seen = drills.node_sql(n, "SELECT @@innodb_flush_log_at_trx_commit")
        if seen != str(value):
            raise SystemExit(f"bench-durability: {n} runs with innodb_flush_log_at_trx_commit={seen}, not {value}")
    drills.wait_healthy(180)


def sequential() -> list[float]:
    session = drills.Session()
    try:
        for _ in range(50):  # warm-up
            drills.write(session, TABLE, "warm")
        latencies = []
        for _ in range(SEQUENTIAL):
            t = time.perf_counter()
            drills.write(session, TABLE, "seq")
            latencies.append(time.perf_counter() - t)
        return latencies
    finally:
        session.close()


def concurrent() -> int:
    counts = [0] * CONCURRENT
    end = time.monotonic() + CONCURRENT_SECONDS

    def work(i):
        session = drills.Session()
        try:
            while time.monotonic() < end:
                drills.write(session, TABLE, f"c{i}")
                counts[i] += 1
        finally:
            session.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    lab.up(3)
    rows = []
    try:
        for value in VALUES:
            deploy_with(value)
            drills.prepare_writes(TABLE)
            lat = sequential()
            total = concurrent()
            rows.append((value, statistics.median(lat), pct(lat, 0.95), pct(lat, 0.99), len(lat) / sum(lat),
                         total / CONCURRENT_SECONDS))
            drills.log(f"bench-durability: flush_log_at_trx_commit={value} measured")
    finally:
        if VALUES[-1] != 1:
            deploy_with(1)  # leave the lab as the deploy makes it
    print()
    print(f"{'innodb_flush_log_at_trx_commit':<31} {'median':>9} {'p95':>9} {'p99':>9} "
          f"{'1 session':>12} {f'{CONCURRENT} sessions':>13}")
    for value, med, p95, p99, rate1, rate4 in rows:
        print(f"{value:<31} {med * 1000:>6.2f} ms {p95 * 1000:>6.2f} ms {p99 * 1000:>6.2f} ms "
              f"{rate1:>7.0f} w/s {rate4:>8.0f} w/s")
    if len(rows) == 2:
        (_, m1, _, _, r1, c1), (_, m2, _, _, r2, c2) = rows
        print(f"\n1 against 2: median write latency x{m1 / m2:.2f}, one-session throughput x{r1 / r2:.2f}, "
              f"{CONCURRENT}-session throughput x{c1 / c2:.2f}")
    for value, med, p95, p99, rate1, rate4 in rows:
        records.append("durability", f"{value} (default)" if value == 1 else str(value),
                       {"bench": "tests/bench/durability.py", "where": "the lab: 3 nodes (inventories/lab.py), the "
                        "nodes' disks on this host's", "mariadb_innodb_flush_log_at_trx_commit": value,
                        "writes": "single-row autocommit INSERTs through the VIP", "sequential": SEQUENTIAL,
                        "sessions": CONCURRENT, "sessions_seconds": CONCURRENT_SECONDS},
                       {"median_ms": med * 1000, "p95_ms": p95 * 1000, "p99_ms": p99 * 1000,
                        "one_session_wps": rate1, "sessions_wps": rate4})
    print(f"\nWrites: single-row autocommit INSERTs through the VIP ({SEQUENTIAL} sequential in one session; "
          f"{CONCURRENT} sessions for {CONCURRENT_SECONDS:.0f} s). Each is replicated to 3 Galera nodes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
