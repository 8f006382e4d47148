"""The health of the lab's deployed stack: pyinfra runs (deploy, verify.py's JSON report),
waiting until healthy, and restore(): every node on, every link up, every service running,
then healthy again, within a bound."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import backends, lifecycle
from lab.faults import allow_packets, power_on, running
from lab.clients import node_sql
from lab.machines import exec_
from config.paths import DBCHECK
from facts.galera_rules import serving
from lab.names import REPO_ROOT, LabError
from lab.waits import DrillError, SqlError, intervene, log

ROOT = REPO_ROOT
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
DEPLOY_TIMEOUT = 900      # s: a first deploy on fresh nodes takes about 5 min
VERIFY_TIMEOUT = 180      # s: one verify.py run
RESTORE_BOUND = 540       # s: restore() brings the lab back within this, or gives up

# --- the health report ---------------------------------------------------------------------


def pyinfra(*args, env=None, timeout: float = DEPLOY_TIMEOUT) -> subprocess.CompletedProcess:
    """pyinfra from the repository root, bounded; output merged into stdout."""
    return subprocess.run(
        [PYINFRA, *args], cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


FAILURE_LINE = re.compile(r"error|fail|could not|did not|timed out|refus|hung|^E: ", re.I)


def run_excerpt(output: str, tail: int = 4000) -> str:
    """What a failed pyinfra run printed that says why: every line that reads like an error
    (with the host it names), then the last `tail` characters."""
    lines = [line for line in output.splitlines() if FAILURE_LINE.search(line) and "No changes" not in line]
    return "\n".join(["--- error lines ---", *lines[-80:], "--- tail ---", output[-tail:]])


def blast_radius(output: str) -> str:
    """The blast radius a pyinfra run printed (its numbered steps, up to the next "-->"), or ""
    when the run printed none."""
    return output.split("Blast radius")[1].split("-->")[0] if "Blast radius" in output else ""


def changed_operations(output: str) -> list[str]:
    """Operations that executed a command on some host ('[nodeXX] Success')."""
    changed, current = [], None
    for line in output.splitlines():
        m = re.match(r"--> Starting (?:serial )?operation: (.*?)\s*$", line)
        if m:
            current = m.group(1)
        elif re.search(r"\[node\d+\] Success", line) and current and current not in changed:
            changed.append(current)
    return changed


def verify_report(timeout: float = VERIFY_TIMEOUT) -> dict:
    """verify.py's JSON health report (ok, vip_holders, failures, facts, ...); a run that does
    not finish within `timeout` is a report that is not OK."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "health.json"
        try:
            run = pyinfra("-y", "inventories/lab.py", "verify.py", env={"HA_VERIFY_JSON": str(path)},
                          timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "failures": [f"verify.py did not finish within {timeout:.0f}s"]}
        if not path.exists():
            return {"ok": False, "failures": [f"no report (pyinfra exit {run.returncode})"],
                    "output": run.stdout[-3000:]}
        return json.loads(path.read_text())


def galera_synced_count(report: dict) -> int:
    """Nodes whose reported Galera state serves (facts.galera_rules.serving: the deploy's own rule)."""
    return sum(1 for f in report.get("facts", {}).values() if serving(f.get("galera")))


def rabbit_running(report: dict) -> set[str]:
    facts = report.get("facts", {})
    seen = [set((f.get("rabbitmq") or {}).get("running_nodes") or []) for f in facts.values()]
    return set.intersection(*seen) if seen else set()


def wait_healthy(timeout: float = 300, on_wait=None) -> tuple[dict, float]:
    """Poll the health report until it is OK (every check, 3 Synced, RabbitMQ all running).
    on_wait(report): called with each report that is not OK (e.g. to unstick a service).
    A newest backup that failed, once it is the only failure, is followed by one full backup
    (retake_failed_backup): the hourly timer can fire while a drill cuts the cluster."""
    start = time.monotonic()
    last = {}
    retaken: list[str] = []
    while (left := timeout - (time.monotonic() - start)) > 0:
        last = verify_report(min(VERIFY_TIMEOUT, max(left, 30)))
        if last.get("ok"):
            return last, time.monotonic() - start
        retake_failed_backup(last, retaken, bound=timeout - (time.monotonic() - start) - 30)
        if on_wait:
            on_wait(last)
        time.sleep(2)
    error = DrillError(f"not healthy after {time.monotonic() - start:.0f}s: "
                       + "; ".join(last.get("failures", []))[:2000])
    error.report = last
    raise error


def deploy(timeout: float = DEPLOY_TIMEOUT, data: dict | None = None, nodes: list[str] | None = None) -> subprocess.CompletedProcess:
    """deploy.py on the lab; `data`: extra group data for this run (inventories/lab.py
    HA_LAB_DATA), e.g. {"keepalived_unicast": True}; `nodes`: an inventory of only these
    (HA_LAB_NODES)."""
    env = {}
    if data:
        env["HA_LAB_DATA"] = json.dumps(data)
    if nodes:
        env["HA_LAB_NODES"] = ",".join(nodes)
    return pyinfra("-y", "inventories/lab.py", "deploy.py", env=env, timeout=timeout)


def failed_backup(report: dict) -> str | None:
    """The controller whose report row says its newest backup failed (health/backup.py), None
    when none does. A drill that stops, cuts or resyncs the backup node while its hourly timer
    fires makes that backup fail, and the report stays FAIL until the next one succeeds."""
    for node, rows in sorted((report.get("hosts") or {}).items()):
        if any(r.get("name") == "backup" and r.get("status") == "FAIL" and "the newest backup" in (r.get("detail") or "")
               for r in rows):
            return node
    return None


def retake_failed_backup(report: dict, retaken: list[str], bound: float) -> bool:
    """A full backup now, once (`retaken` remembers), when the report's only failures are one
    node's failed newest backup: the cluster serves again and only the backup the timer started
    during a drill stays red (a full: an incremental after a resync would build on another
    datadir's history). As an operator would; recorded in `interventions`. True when taken.
    A backup that keeps failing fails again here, and the report stays FAIL."""
    node = failed_backup(report)
    failures = report.get("failures") or []
    if not node or retaken or not failures or not all(f.startswith(f"{node}: backup: ") for f in failures):
        return False
    retaken.append(node)
    log(f"the newest backup on {node} failed, the only failure left: a full backup taken")
    intervene(f"the newest backup on {node} failed (a drill disturbed it): a full backup taken", show=False)
    run = take_backup("full", timeout=max(30, min(600, bound)))
    if run.returncode != 0:
        log(f"the retaken backup failed too:\n{run_excerpt(run.stdout)}")
    return True


def take_backup(kind: str = "full", timeout: float = DEPLOY_TIMEOUT) -> subprocess.CompletedProcess:
    """One backup now on the backup node (backup.py, as `make backup KIND=...`)."""
    return pyinfra("-y", "inventories/lab.py", "backup.py", "--data", f"kind={kind}", timeout=timeout)


def galera_without_primary() -> dict | None:
    """Galera after a quorum loss, when no running node that answers is in a Primary
    component: {node: its wsrep_cluster_status and wsrep_last_committed}; None when one is, or
    none answers. Read only: the deploy recovers that picture itself (operations/galera_plan.py,
    its "recover" mode); pc.bootstrap=YES, the operator's answer, is refused by a provider left
    Disconnected (galera#40, galera#500: the 30-minute soak's end)."""
    states = {}
    for n in running():
        try:
            out = node_sql(n, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                              "('wsrep_cluster_status','wsrep_last_committed')", timeout=15)
        except (SqlError, LabError):
            continue
        states[n] = dict(l.split("\t", 1) for l in out.splitlines() if "\t" in l)
    if not states or any(v.get("wsrep_cluster_status") == "Primary" for v in states.values()):
        return None
    return states


def unstick_rabbitmq(stuck_for: float = 60, timeout: float = 180) -> list[str]:
    """RabbitMQ nodes whose start has hung (unit 'activating' for over `stuck_for` s) are
    restarted (each restart bounded by `timeout`); returns them. Seen on the lab after a power
    cut: Debian 12's RabbitMQ 3.10.8 on Erlang 25.2 can hang at boot in `global` name-server
    synchronisation ('Faking nodedown/nodeup' in its log, the "global hang" of
    rabbitmq-server#6034, whose workaround for Erlang >= 25.1 came in later 3.10.x releases);
    a restart of that node clears it."""
    stuck = []
    for n in running():
        r = exec_(n, ["sh", "-c", "systemctl show -p ActiveState --value rabbitmq-server; "
                                  "echo $(( $(date +%s) - $(date -d \"$(systemctl show -p "
                                  "ExecMainStartTimestamp --value rabbitmq-server)\" +%s) ))"],
                  timeout=30)
        lines = r.stdout.split()
        if len(lines) == 2 and lines[0] == "activating" and lines[1].isdigit() and int(lines[1]) > stuck_for:
            stuck.append(n)
    for n in stuck:
        intervene(f"RabbitMQ on {n} hung at start (activating for over {stuck_for:.0f}s; "
                  "rabbitmq-server#6034 global hang): restarted")
        bound = max(10, int(timeout))
        exec_(n, ["timeout", str(bound), "systemctl", "restart", "rabbitmq-server"], timeout=bound + 20)
    return stuck


def restart_rabbitmq_together(deadline: float, reserve: float = 150) -> None:
    """Every running node's broker stopped (killed if its stop hangs for 60 s), then all started
    at once, each start bounded by what is left before `deadline` (time.monotonic()) less
    `reserve` (kept for what follows), at most 240 s. What an operator does when no broker runs
    its app and none will: seen on the lab after two power cuts, the surviving node paused by
    pause_minority hung in its resume (the `global` hang of rabbitmq-server#6034) with its unit
    'active', so unstick_rabbitmq() never restarted it, and the other two waited for its tables.
    Started together, each finds the others' tables (the deploy's own rule for a cluster whose
    brokers are all stopped)."""
    nodes = running()
    stop = ("timeout -k 5 60 systemctl stop rabbitmq-server || systemctl kill -s KILL rabbitmq-server; "
            "systemctl reset-failed rabbitmq-server 2>/dev/null; true")
    with ThreadPoolExecutor(len(nodes) or 1) as pool:
        list(pool.map(lambda n: exec_(n, ["sh", "-c", stop], timeout=90), nodes))
        bound = int(min(240, max(30, deadline - reserve - time.monotonic())))  # after the stops
        list(pool.map(lambda n: exec_(n, ["timeout", "-k", "5", str(bound), "systemctl", "start", "rabbitmq-server"],
                                      timeout=bound + 20), nodes))


class LabUnrecoverable(DrillError):
    """restore() could not bring the lab back within its bound: the next drill needs a rebuilt
    lab (rebuild()); the message says what was still wrong."""


def _start_everything(left) -> None:
    """Every node on with its link up, no packet filter, every service and stand-in started,
    no node desynced (each step bounded by what is left of restore's time)."""
    for st in lifecycle.status():
        if st["state"] != "running":
            power_on(st["name"])
        elif st.get("isolated"):
            lifecycle.heal(st["name"])
    units = ["haproxy", "keepalived", DBCHECK["unit"], backends.UNIT]
    for n in running():
        allow_packets(n)
        exec_(n, ["sh", "-c",
                  f"rm -rf {backends.DOWN_DIR}; "
                  f"systemctl start {' '.join(units)}; "
                  "mysql -e 'SET GLOBAL wsrep_desync=OFF' 2>/dev/null; true"], timeout=min(120, max(20, left())))


def restore(timeout: float = RESTORE_BOUND) -> dict:
    """Put the lab back as the drills found it: every node powered on with its link up, every
    service of the HA layer and every API stand-in running, no node desynced; then wait until
    the health report is OK. Meanwhile a RabbitMQ node hung at start for over a minute is
    restarted; not OK within 150 s: RabbitMQ not running on every node is restarted on all
    nodes together, a newest backup that failed is followed by a full one once it is the only
    failure (the backup timer fired while a drill disturbed the backup node), and a Galera
    cluster without a Primary component goes straight to the deploy (it recovers that itself);
    else, still not OK after 120 s more: the deploy runs once
    (each recorded in `interventions`), with what is left of `timeout`, and the report must be
    OK then. Not OK within `timeout` (a few minutes) in all: LabUnrecoverable, with the
    cause. Returns the report."""
    t0 = time.monotonic()
    deadline = t0 + timeout

    def left() -> float:
        return deadline - time.monotonic()

    def unstick(report: dict) -> None:
        unstick_rabbitmq(timeout=min(90, max(10, left() - 200)))

    try:
        _start_everything(left)
        try:
            report, _ = wait_healthy(min(150, left()), on_wait=unstick)
        except DrillError as exc:
            log(f"restore: {exc}")
            no_primary = galera_without_primary()
            if no_primary:
                log(f"restore: no Primary component ({no_primary}); the deploy recovers it")
                intervene("Galera had no Primary component: the deploy recovers it", show=False)
            seen = getattr(exc, "report", {})
            brokers, up = rabbit_running(seen), running()
            # only from a report that read every running node (no report: not RabbitMQ's doing)
            if set(up) <= set(seen.get("facts") or {}) and len(brokers) < len(up):
                intervene(f"RabbitMQ running on {sorted(brokers) or 'no node'} after "
                          f"{time.monotonic() - t0:.0f}s: every broker restarted together", show=False)
                try:
                    restart_rabbitmq_together(deadline)
                except (LabError, subprocess.TimeoutExpired) as err:
                    log(f"restore: the together restart did not finish: {err}")  # the deploy below
            try:
                if left() <= 0 or no_primary:
                    raise  # to the deploy (or, with no time left, to LabUnrecoverable)
                report, _ = wait_healthy(min(120, left()), on_wait=unstick)
            except DrillError as exc2:
                if left() < 60:
                    raise
                log(f"restore: {exc2}; running the deploy")
                if not no_primary:  # else its intervention above says why the deploy runs
                    intervene(f"not healthy after {time.monotonic() - t0:.0f}s: deploy run", show=False)
                run = deploy(timeout=max(30, left() - 30))
                if run.returncode != 0:
                    raise DrillError(f"restore: the deploy failed:\n{run_excerpt(run.stdout)}") from None
                report, _ = wait_healthy(max(30, left()), on_wait=unstick)
    except (DrillError, LabError, SqlError, subprocess.TimeoutExpired) as exc:
        raise LabUnrecoverable(f"restore: the lab is not back after {time.monotonic() - t0:.0f}s "
                               f"(bound {timeout:.0f}s): {exc}") from exc
    log(f"restore: healthy in {time.monotonic() - t0:.1f}s; VIP on {', '.join(report.get('vip_holders', []))}")
    return report


def rebuild(nodes: int = 3) -> None:
    """A lab built again from scratch after restore() gave up: lab down with the node disks
    purged, up, then the deploy, the API stand-ins and a full backup on fresh nodes (about 6 min).
    DrillError if the deploy fails: then the lab itself is broken."""
    t0 = time.monotonic()
    log("rebuild: lab down (node disks purged), up, deploy")
    lifecycle.down(purge=True)
    lifecycle.up(nodes)
    for what, run in (("deploy", lambda: deploy()), ("API stand-ins", backends.install)):
        result = run()
        if result.returncode != 0:
            raise DrillError(f"rebuild: the {what} failed:\n{run_excerpt(result.stdout)}")
    # the lab as the suite had it: a backup taken (test_45 takes them early; without one the
    # report warns "no backup taken yet" and a drill that wants no warning fails)
    result = take_backup("full")
    if result.returncode != 0:
        raise DrillError(f"rebuild: the backup failed:\n{run_excerpt(result.stdout)}")
    log(f"rebuild: deployed in {time.monotonic() - t0:.1f}s")
