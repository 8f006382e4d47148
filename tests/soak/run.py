"""make soak: workloads through the VIP while the nemesis injects faults, then the checker
(LAB ONLY: the lab up and deployed).

    python -m tests.soak run [--minutes 30] [--seed N] [--out DIR] [--only KIND,...]

Workloads, all at once, all through the VIP or to the controllers as OpenStack's clients
connect: list-append transactions (3 clients), bank transfers and reads (2), a publisher with
confirms and a consumer with manual acks on a quorum queue; keystone calls (a token, a project
created and deleted) when the lab has keystone (make keystone). The nemesis
(tests/soak/nemesis.py) runs its schedule for the minutes given; then every fault is healed,
the layer recovered, the workloads stopped, every list-append key read and the queue drained;
the history (OUT/history.jsonl, written as it goes) is checked (tests/soak/checker.py) and the
report printed, its last line the `soak:` line.
Exit status: 0 when nothing was lost, no anomaly was found and no recovery needed the lab's
own restore; 1 otherwise; 2 when the soak could not run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from lab import keystone as lab_keystone
from tests.soak import timeline, workloads
from tests.soak.checker import check
from tests.soak.history import Recorder
from tests.soak.nemesis import Nemesis, schedule

ACCOUNTS = 8
BALANCE = 100
LIST_CLIENTS = 3
BANK_CLIENTS = 2


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_workloads(rec: Recorder, seed: int, keys: workloads.Keys, keystone: bool) -> list[workloads.Workload]:
    accounts = [str(a) for a in range(ACCOUNTS)]
    threads: list[workloads.Workload] = [workloads.ListAppend(rec, f"append-{i}", seed, keys) for i in range(LIST_CLIENTS)]
    threads += [workloads.Bank(rec, f"bank-{i}", seed, accounts) for i in range(BANK_CLIENTS)]
    threads += [workloads.Publisher(rec, "publish", seed), workloads.Consumer(rec, "consume", seed)]
    if keystone:
        threads.append(workloads.Keystone(rec, "keystone", seed, pause=0.2))
    for t in threads:
        t.start()
    return threads


def prepare() -> None:
    """Fresh soak tables through the VIP and an empty soak queue."""
    from lab import drills
    for statement in workloads.prepare_sql({str(a): BALANCE for a in range(ACCOUNTS)}):
        drills.sql(statement, timeout=30)
    pika = workloads._pika()
    connection = pika.BlockingConnection(workloads.amqp_parameters())
    try:
        channel = connection.channel()
        channel.queue_declare(workloads.QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_purge(workloads.QUEUE)
    finally:
        connection.close()


def soak(minutes: float, seed: int, out: Path, only: tuple[str, ...] = ()) -> int:
    from lab import drills
    out.mkdir(parents=True, exist_ok=True)
    nodes = sorted(drills.running())
    plan = schedule(seed, minutes, len(nodes), only)
    log(f"{minutes} min, seed {seed}, {len(nodes)} nodes, {len(plan)} faults planned; history in {out}/history.jsonl")
    drills.wait_healthy(300)
    prepare()
    rec = Recorder(out / "history.jsonl", meta={"seed": seed, "minutes": minutes, "nodes": nodes,
                                                "accounts": {str(a): BALANCE for a in range(ACCOUNTS)},
                                                "plan": [p.kind for p in plan]})
    nemesis = Nemesis(random.Random(f"{seed}/nemesis"), log=log)
    keys = workloads.Keys()
    keystone = lab_keystone.installed()
    log("keystone: " + ("its calls through the VIP join the workloads" if keystone else
                        "not installed (make keystone): no API workload"))
    threads = start_workloads(rec, seed, keys, keystone)
    problems, recoveries = [], []
    deadline = time.monotonic() + minutes * 60
    try:
        time.sleep(10)  # the workloads' baseline before the first fault
        for planned in plan:
            if time.monotonic() >= deadline:
                break
            fault = rec.fault_start(planned.kind)
            try:
                detail = nemesis.inject(planned.kind, planned.hold)
                log(f"fault {fault} {planned.kind}: {json.dumps(detail)}; {planned.hold:.0f} s")
                if detail.get("traceback"):
                    problems.append(f"fault {fault} ({planned.kind}): the deploy printed a traceback")
                time.sleep(planned.hold)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is said, the soak goes on
                problems.append(f"fault {fault} ({planned.kind}) could not be injected: {exc}")
                detail = {"error": str(exc)[:300]}
            finally:
                nemesis.heal()
                rec.fault_end(fault, planned.kind)
            try:
                how, seconds = nemesis.recover()
            except Exception as exc:  # noqa: BLE001 - said, the faults stop, the history is still checked
                problems.append(f"fault {fault} ({planned.kind}): the lab could not be recovered, the soak stopped "
                                f"injecting: {str(exc)[:500]}")
                log(problems[-1])
                break
            recoveries.append((planned.kind, how, seconds))
            log(f"fault {fault} {planned.kind}: healthy again {seconds:.0f} s after the heal ({how})")
            if how == "intervention":
                problems.append(f"fault {fault} ({planned.kind}): the lab's restore was needed after the deploy")
            time.sleep(planned.quiet)
    finally:
        nemesis.heal()
        for t in threads:
            t.stop()
        for t in threads:
            t.join(timeout=60)
        # Each end step on its own: one that fails (no Primary left, say) is said, and what was
        # recorded is still checked.
        consumer = next(t for t in threads if isinstance(t, workloads.Consumer))
        for what, step in (("recovery", nemesis.recover), ("final reads", lambda: workloads.final_reads(rec, keys)),
                           ("queue drain", consumer.drain), ("queue drop", consumer.drop)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"end of the soak: the {what} failed: {str(exc)[:500]}")
        for t in threads:
            if isinstance(t, workloads.SqlWorkload) and t.session is not None:
                t.session.close()
        rec.close()
    report = check(rec.records)
    body = report.text().rsplit("\n", 1)[0]  # the soak: line goes last, after the runner's problems
    text = "\n".join([*(f"recovery after {k}: {how} in {s:.0f} s" for k, how, s in recoveries), "", body,
                      *problems, report.summary()])
    (out / "report.txt").write_text(text + "\n")
    timeline.write(rec.records, out / "timeline.svg", title=f"soak {out.name}: {minutes:g} min, seed {seed}")
    print(text)
    return 1 if report.anomalies or problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak run")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", default="", help="comma-separated fault kinds (default: every kind)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    out = Path(args.out or f"soak-out/{time.strftime('%Y%m%dT%H%M%S')}-seed{seed}")
    try:
        return soak(args.minutes, seed, out, tuple(k for k in args.only.split(",") if k))
    except ValueError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
