"""make bench-upgrade: a rolling upgrade of the lab under load (issue 19), timed and checked.

The lab is first put where a real site is before a security release: Debian 12 offers two
versions of mariadb-server, haproxy and memcached (the point release's and the security
archive's); every node is moved to the older ones by hand (lab/versions.py: the deploy itself
never downgrades), then a deploy pins them (package_versions: the pins file, no turn). Then,
under load, one deploy with the newer pins: the rolling upgrade, one controller at a time, the
writer and the VIP holder last (operations/upgrade.py).

The load, as OpenStack's services make it: two list-append SQL clients through the VIP (each
transaction tried once; every acknowledged append must be read back at the end), an AMQP
publisher with publisher confirms and a consumer with manual acks on a quorum queue (every
confirmed message must be consumed), GETs through the VIP with one retry as keystoneauth does.
The soak's recorder and checker (tests/soak) judge the history: lost writes and messages,
isolation anomalies, the longest gap between acknowledged operations.

Printed: the versions, each controller's turn in seconds and how it rejoined (IST), the roll in
all, the longest gaps, failed single-try writes, failed GETs. Recorded in
docs/bench-upgrade/records.json (docs/operations.md "Upgrades"). The lab is left deployed at the
newer versions with no pin (package_versions empty: the pins file removed), as a fresh lab is.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills, sitemodel, versions  # noqa: E402
from lab.clients import Gets  # noqa: E402
from operations.upgrade_plan import IST_LINE, SST_LINE  # noqa: E402
from tests.bench import records  # noqa: E402
from tests.bench.timeline import Request, timeline_svg  # noqa: E402
from tests.soak import workloads  # noqa: E402
from tests.soak.checker import check  # noqa: E402
from tests.soak.history import Recorder  # noqa: E402

HISTORY = "/var/tmp/halab/upgrade-history.jsonl"  # the last run's history: python -m tests.soak check it
WARM = 10.0  # s of load before the roll and after it
SEED = 19
TURN = re.compile(r"upgrade: (node\d+) upgraded in (\d+) s")
ROLL = re.compile(r"upgrade: the roll took (\d+) s in all")


def rejoined(since: float) -> dict[str, str]:
    """How each node's mariadb came back since `since` (time.time()), from its journal (the
    lines the turn itself reads: operations/upgrade_plan.py IST_LINE, SST_LINE)."""
    out = {}
    for n in nodes():
        j = versions.sh(n, f"journalctl -u mariadb --since @{int(since)} --no-pager -o cat", timeout=60)
        out[n] = ("SST" if SST_LINE in j else "IST" if IST_LINE in j else "no state transfer") if "WSREP" in j else "not restarted"
    return out


def nodes() -> list[str]:
    return [c.name for c in sitemodel.site().controllers]


def deploy_ok(pins: dict, what: str) -> str:
    run = drills.deploy(data={"package_versions": pins}, timeout=3600)
    if run.returncode != 0:
        raise drills.DrillError(f"{what}: the deploy failed\n{drills.run_excerpt(run.stdout)}")
    return run.stdout


def installed(names: list[str], packages) -> dict[str, dict]:
    return {n: versions.versions(n, packages)["installed"] for n in names}


def settle(pairs: dict) -> None:
    """The lab at the older versions, pinned: by hand, then one deploy that runs no turn."""
    old = versions.pins(pairs, 0)
    versions.roll_by_hand(nodes(), old)
    drills.wait_healthy(300)  # keepalived's check_alive passes again 20 s after HAProxy came back
    out = deploy_ok(old, "pinning the older versions")
    turns = [op for op in drills.changed_operations(out) if op.startswith("upgrade:")]
    if turns:
        raise drills.DrillError(f"the older versions were installed by hand, yet the pinning deploy ran turns: {turns}")
    drills.wait_healthy(300)


class Load:
    """The clients of one run, recorded in one history."""

    def __init__(self, rec: Recorder):
        for statement in workloads.prepare_sql({str(a): 100 for a in range(5)}):
            drills.sql(statement)
        self.rec, self.keys = rec, workloads.Keys()
        self.sql = [workloads.ListAppend(rec, f"append-{i}", SEED, self.keys) for i in range(2)]
        self.publisher = workloads.Publisher(rec, "publisher", SEED)
        self.consumer = workloads.Consumer(rec, "consumer", SEED)
        self.gets = Gets()

    def start(self) -> None:
        for t in [*self.sql, self.publisher, self.consumer, self.gets]:
            t.start()

    def stop(self) -> None:
        for t in [*self.sql, self.publisher, self.consumer]:
            t.stop()
        self.gets.stopping.set()
        for t in [*self.sql, self.publisher, self.consumer, self.gets]:
            t.join(60)
        self.consumer.drain()
        workloads.final_reads(self.rec, self.keys)


# A transaction InnoDB rolled back for a deadlock between the two list-append clients (their
# locking reads and upserts cross): the workload's own conflict, before and after the roll as
# during it; OpenStack's services retry it (oslo.db wrap_db_retry). Counted apart.
DEADLOCK = "ERROR 1213"
EVENT_GAP = 3.0  # s: failures closer than this are one event (a writer switch, the VIP moving)


def roll_failures(records: list[dict]) -> tuple[list[tuple[float, str]], int]:
    """The single-try SQL transactions the roll cost, (time, client) each: not acknowledged for
    any other reason than a deadlock; and the deadlocks' count."""
    invoked = {r["id"]: r["mono"] for r in records if r["type"] == "invoke"}
    done = [r for r in records if r["type"] in ("fail", "info") and r["process"].startswith("append-")]
    lost = sorted((invoked[r["id"]], r["process"]) for r in done if DEADLOCK not in r.get("error", ""))
    return lost, sum(1 for r in done if DEADLOCK in r.get("error", ""))


def events(failures: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """The failures grouped into events: each within EVENT_GAP s of the one before."""
    out: list[list[tuple[float, str]]] = []
    for f in failures:
        if out and f[0] - out[-1][-1][0] <= EVENT_GAP:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def failure_figures(records: list[dict]) -> dict:
    lost, deadlocks = roll_failures(records)
    grouped = events(lost)
    worst = max((sum(1 for _, c in e if c == client) for e in grouped for client in {c for _, c in e}), default=0)
    return {"failed_single_try": len(lost), "events": len(grouped), "worst_per_client_per_event": worst,
            "deadlocks": deadlocks}


def window_gaps(report) -> dict[str, float]:
    """The longest gap between acknowledged operations while the roll ran, per category."""
    return {c: round(max(g), 1) for c, g in report.gaps.get("rolling upgrade", {}).items() if g}


def roll(pairs: dict) -> dict:
    """The newer pins deployed under load; the figures and the checker's report."""
    new = versions.pins(pairs, 1)
    rec = Recorder(HISTORY, {"seed": SEED, "accounts": {str(a): 100 for a in range(5)}, "bench": "upgrade"})
    load = Load(rec)
    load.start()
    try:
        time.sleep(WARM)
        fault = rec.fault_start("rolling upgrade", pins=new)
        started, wall = time.monotonic(), time.time()
        out = deploy_ok(new, "the rolling upgrade")
        took = time.monotonic() - started
        rec.fault_end(fault, "rolling upgrade")
        time.sleep(WARM)
    finally:
        load.stop()
        rec.close()
    report = check(rec.records)
    return {"output": out, "deploy_s": took, "started": started, "report": report, "records": rec.records,
            "turns": {m.group(1): int(m.group(2)) for m in TURN.finditer(out)},
            "roll_s": int(m.group(1)) if (m := ROLL.search(out)) else None,
            "rejoined": rejoined(wall - 5),
            "gets": {"ok": load.gets.ok, "retried": load.gets.retried, "failed": load.gets.failed},
            **failure_figures(rec.records)}


def requests(records: list[dict], start: float) -> list[Request]:
    """The SQL transactions of a history as the failover pictures draw requests: started `t` s
    after the roll began, answered or not, and how long until then."""
    invoked = {r["id"]: r["mono"] for r in records if r["type"] == "invoke" and r["process"].startswith("append-")}
    return [Request(invoked[r["id"]] - start, "db", r["type"] == "ok", r["mono"] - invoked[r["id"]])
            for r in records if r["type"] in ("ok", "fail", "info") and r["id"] in invoked]


def unpin() -> None:
    """The pins file removed (package_versions empty): the lab as a fresh one is."""
    deploy_ok({}, "removing the pins")


def main() -> int:
    lab.up(3)
    for run in (drills.deploy(), backends.install()):  # the API stand-ins answer the GETs
        if run.returncode != 0:
            print(drills.run_excerpt(run.stdout))
            raise SystemExit("bench-upgrade: the deploy failed")
    pairs = versions.two_versions("node01")
    if not pairs:
        raise SystemExit(f"bench-upgrade: apt offers one version only of each of {', '.join(versions.PACKAGES)}: "
                         "nothing to upgrade between (Debian's release and security archive agree today)")
    for p, (a, b) in sorted(pairs.items()):
        print(f"{p}: {a} -> {b}")
    settle(pairs)
    got = roll(pairs)
    report = got["report"]
    at = installed(nodes(), versions.pins(pairs, 1))
    again = drills.changed_operations(deploy_ok(versions.pins(pairs, 1), "the deploy after the roll"))
    unpin()
    figures = {"deploy_s": round(got["deploy_s"], 1), "roll_s": got["roll_s"], "turns_s": got["turns"],
               "rejoined": got["rejoined"], "writes_acked": report.acknowledged.get("writes", 0),
               "messages_acked": report.acknowledged.get("messages", 0), "lost": report.lost,
               "anomalies": report.other, "longest_gap_s": window_gaps(report),
               **{k: got[k] for k in ("failed_single_try", "events", "worst_per_client_per_event", "deadlocks")},
               "gets": got["gets"],
               "at_new_versions": all(v == versions.pins(pairs, 1).get(p) for n in at.values() for p, v in n.items()),
               "next_deploy_changes": again}
    records.append("upgrade", "rolling upgrade under load, " + ", ".join(sorted(pairs)), {
        "bench": "tests/bench/upgrade.py", "where": "the lab: 3 nodes (inventories/lab.py)",
        "from": {p: a for p, (a, b) in pairs.items()}, "to": {p: b for p, (a, b) in pairs.items()},
        "galera_gcache_size": sitemodel.site().data["galera_gcache_size"]}, figures)
    picture = records.path_of("upgrade").parent / "roll.svg"
    picture.write_text(timeline_svg(
        f"A rolling upgrade of {', '.join(sorted(pairs))} under load: SQL transactions through the VIP (t: s after the roll began)",
        [{"profile": "deployed", "requests": requests(got["records"], got["started"]), "vip_moved": None}],
        x_end=got["deploy_s"] + WARM))
    print()
    print(report.text())
    print()
    for node, s in got["turns"].items():
        print(f"{node}: turn {s} s, mariadb rejoined by {got['rejoined'].get(node)}")
    print(f"the roll: {got['roll_s']} s in all (the deploy {got['deploy_s']:.0f} s)")
    print(f"single-try SQL transactions the roll cost: {got['failed_single_try']} in {got['events']} events "
          f"(at most {got['worst_per_client_per_event']} per client per event; deadlocks between the clients apart: "
          f"{got['deadlocks']}); longest gap while rolling: {window_gaps(report)}")
    print(f"GETs: "
          f"{got['gets']['ok']} ok, {got['gets']['retried']} retried, {got['gets']['failed']} failed after the retry")
    print(f"every node at the new versions: {figures['at_new_versions']}; the next deploy changed: {again or 'nothing'}")
    return 0 if report.lost == 0 and report.other == 0 and got["gets"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
