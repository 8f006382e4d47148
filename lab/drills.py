"""Failover drills on the lab: what clients of the VIP see while nodes and services fail.

The Python side of tests/lab/test_30_drills.py and tests/bench/failover.py (LAB ONLY):

- who holds the VIP (read from every running node's interface, never assumed);
- HTTP through the VIP to the API stand-ins (lab/backends.py), which answer with the name of
  the node that served the request;
- SQL through the VIP (`mysql` on this host, the admin account of the lab's secrets), one-shot
  or as a long-lived Session;
- HAProxy's view of its servers (`show stat` on a node's admin socket);
- the health report (verify.py, JSON), waiting until healthy, and restore(): every node on,
  every link up, every service running, then healthy again.

Every wait is a bounded polling loop; figures are measured, never asserted here. Nothing here
talks to an address outside the lab's subnet.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from lab import backends, core

ROOT = core.REPO_ROOT
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
VIP = core.VIP
HAPROXY_SOCKET = "/run/haproxy/admin.sock"
DB_PORT = 3306
CHECK_PORT = 9200


class DrillError(AssertionError):
    """A bounded wait ran out, or the lab could not be put back; the message says what."""


class SqlError(Exception):
    pass


class SessionClosed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[drill {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- waiting -------------------------------------------------------------------------------


def wait_for(what: str, probe, timeout: float = 30, interval: float = 0.25):
    """Poll probe() until it returns a truthy value; returns (value, seconds waited).
    Raises DrillError naming `what` and the last value after `timeout` seconds."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = probe()
        except (core.LabError, OSError, subprocess.SubprocessError, SqlError, SessionClosed) as exc:
            last = f"{type(exc).__name__}: {exc}"
            ok = False
        else:
            ok = bool(last)
        elapsed = time.monotonic() - start
        if ok:
            return last, elapsed
        if elapsed > timeout:
            raise DrillError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# --- the lab's nodes -----------------------------------------------------------------------


def nodes() -> list[str]:
    return core.node_names()


def running() -> list[str]:
    return [n["name"] for n in core.status() if n["state"] == "running"]


def holds_vip(node: str) -> bool:
    r = core.exec_(node, ["ip", "-4", "-o", "addr", "show", "dev", core.IFNAME], timeout=10)
    return r.returncode == 0 and f" {VIP}/" in r.stdout


def holders() -> list[str]:
    """The running nodes that have the VIP on their interface (0, 1 or, split brain, more)."""
    out = []
    for n in running():
        try:
            if holds_vip(n):
                out.append(n)
        except core.LabError:
            pass
    return out


def holder() -> str | None:
    h = holders()
    return h[0] if len(h) == 1 else None


def wait_holder(timeout: float = 30, other_than: tuple[str, ...] = ()) -> tuple[str, float]:
    """Exactly one node holds the VIP, none of `other_than`: (that node, seconds waited)."""
    def probe():
        h = holders()
        return h[0] if len(h) == 1 and h[0] not in other_than else None
    what = "exactly one VIP holder" + (f" other than {', '.join(other_than)}" if other_than else "")
    return wait_for(what, probe, timeout)


def power_cut(*names: str) -> None:
    """Power cut of one or more nodes at once: their links go first, then their processes.

    lab.kill alone SIGKILLs the node's init and then takes its link down and flushes its
    addresses; the node's processes die a few milliseconds after init, and keepalived lives
    long enough to see its VIP flushed and resign with a priority-0 advertisement - a clean
    handover (measured: the VIP moved in 0.4 s) that a real power cut never gives. With the
    link down first nothing leaves the node any more, as when a machine loses power: the
    others notice only when the advertisements stop (3 x advert_int + skew)."""
    for n in names:
        core.isolate(n)
    for n in names:
        core.kill(n)


FILTER_TABLE = "lab_drill"


def drop_packets(node: str, match: str) -> None:
    """A packet filter inside `node`'s network namespace (the host's nft, nsenter --net):
    packets matching the nft expression `match` are dropped and counted, both those coming in
    and those going out, e.g. "ip daddr 224.0.0.18" (multicast VRRP advertisements): the node
    and the others no longer hear each other. allow_packets() removes it."""
    pid = core.init_pid(node)
    if not pid:
        raise DrillError(f"{node} is not running")
    chains = "".join(f"  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"
                     f"    {match} counter drop\n  }}\n" for hook in ("input", "output"))
    rules = f"table inet {FILTER_TABLE} {{\n{chains}}}\n"
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "-f", "-"], input=rules, text=True,
                       timeout=30, capture_output=True)
    if r.returncode != 0:
        raise DrillError(f"{node}: nft refused the filter: {r.stderr.strip()[:500]}")
    log(f"{node}: dropping {match}, in and out")


def dropped(node: str) -> int:
    """Packets the drill's filter on `node` dropped so far (0 without a filter)."""
    pid = core.init_pid(node)
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "list", "table", "inet", FILTER_TABLE],
                       text=True, capture_output=True, timeout=30)
    return sum(int(m) for m in re.findall(r"counter packets (\d+)", r.stdout))


def allow_packets(node: str) -> None:
    """Remove the drill's packet filter from `node` (nothing to do without one)."""
    pid = core.init_pid(node)
    if pid:
        subprocess.run(["nsenter", "-t", str(pid), "-n", "--", "nft", "delete", "table", "inet", FILTER_TABLE],
                       capture_output=True, timeout=30)


def systemctl(node: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return core.exec_(node, ["systemctl", *args], timeout=timeout)


def place_vip(target: str, timeout: float = 60) -> None:
    """Move the VIP to `target` the way an operator would: keepalived stopped on every other
    node (target, the only candidate left, takes it), then started again (every node is BACKUP
    with nopreempt: the VIP stays on target)."""
    if holder() == target:
        return
    others = [n for n in running() if n != target]
    for n in others:
        systemctl(n, "stop", "keepalived")
    try:
        wait_for(f"{target} to hold the VIP", lambda: holders() == [target], timeout)
    finally:
        for n in others:
            systemctl(n, "start", "keepalived")
    # the others are back as BACKUP: still one holder
    wait_for(f"{target} to keep the VIP", lambda: holders() == [target], 10)
    log(f"VIP placed on {target}")


# --- HTTP through the VIP ------------------------------------------------------------------

# No proxy: the environment's http_proxy must never carry lab traffic anywhere.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, host: str = VIP, timeout: float = 3) -> str:
    """The body of GET http://host:port/ (the serving node's name); raises on any failure."""
    with _opener.open(f"http://{host}:{port}/", timeout=timeout) as r:
        return r.read().decode().strip()


def http_names(port: int, count: int = 30, host: str = VIP, timeout: float = 3) -> list[str | None]:
    """`count` requests, one connection each: the serving node's name, None for a failure."""
    out = []
    for _ in range(count):
        try:
            out.append(http_get(port, host, timeout))
        except (OSError, urllib.error.URLError):
            out.append(None)
    return out


# --- SQL through the VIP -------------------------------------------------------------------


def secrets() -> dict:
    return json.loads(Path(core.SECRETS_FILE).read_text())


def _mysql_argv(host: str, database: str | None = None) -> list[str]:
    argv = ["mysql", "--no-defaults", "-h", host, "-P", str(DB_PORT), "-u", "admin",
            "--connect-timeout=3", "--disable-reconnect", "-N", "-B"]
    return argv + ([database] if database else [])


def _mysql_env() -> dict:
    # The password travels in the environment of the client only: never argv, never printed.
    return {**os.environ, "MYSQL_PWD": secrets()["mariadb_admin_password"]}


def sql(query: str, host: str = VIP, timeout: float = 10, database: str | None = None) -> str:
    """One query in a new connection through `host` (the VIP); its output, stripped.
    Raises SqlError with mysql's message."""
    try:
        r = subprocess.run(_mysql_argv(host, database) + ["-e", query], env=_mysql_env(),
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SqlError(f"mysql through {host}: no answer in {timeout}s") from None
    if r.returncode != 0:
        raise SqlError((r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1])
    return r.stdout.strip()


def db_node(timeout: float = 10) -> str | None:
    """The node a new connection through the VIP lands on (SELECT @@hostname), None if none."""
    try:
        return sql("SELECT @@hostname", timeout=timeout) or None
    except SqlError:
        return None


def node_sql(node: str, query: str, timeout: float = 30) -> str:
    """A query on one node, as root through its unix socket (not through HAProxy)."""
    r = core.exec_(node, ["mysql", "-N", "-B", "-e", query], timeout=timeout)
    if r.returncode != 0:
        raise SqlError(f"{node}: {r.stderr.strip()}")
    return r.stdout.strip()


def wsrep(node: str) -> dict[str, str]:
    out = node_sql(node, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
                         "'wsrep_cluster_status','wsrep_cluster_size','wsrep_ready','wsrep_local_state')",
                   timeout=15)
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


class Session:
    """A long-lived client session through the VIP (one `mysql` process, one TCP connection),
    as an OpenStack service holds its pooled connections. query() sends one statement and
    reads its one-line answer; SessionClosed when the server side closed the connection."""

    def __init__(self, database: str | None = None, host: str = VIP):
        self.proc = subprocess.Popen(
            _mysql_argv(host, database) + ["-n"], env=_mysql_env(), text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            self.node = self.query("SELECT @@hostname")
        except SessionClosed:
            self.close()
            raise

    def query(self, statement: str, timeout: float = 15) -> str:
        if self.proc.poll() is not None:
            raise SessionClosed(self._why())
        try:
            self.proc.stdin.write(statement.rstrip(";") + ";\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SessionClosed(self._why()) from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise SessionClosed(f"no answer in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise SessionClosed(self._why())
        return line.strip()

    def _why(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().strip() if self.proc.stderr else ""
        return err.splitlines()[-1] if err else f"mysql exited {self.proc.returncode}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


# --- writes that can be counted ------------------------------------------------------------

WRITES_DB = "drills"


def prepare_writes(table: str) -> None:
    """A fresh table drills.<table> (id, node that took the write, client tag)."""
    sql(f"CREATE DATABASE IF NOT EXISTS {WRITES_DB}")
    sql(f"DROP TABLE IF EXISTS {WRITES_DB}.{table}")
    sql(f"CREATE TABLE {WRITES_DB}.{table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "node VARCHAR(32) NOT NULL, client VARCHAR(64) NOT NULL, "
        "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")


def write(session: Session, table: str, client: str, timeout: float = 15) -> tuple[str, int]:
    """One acknowledged write in `session`: (node that took it, its id)."""
    out = session.query(f"INSERT INTO {WRITES_DB}.{table} (node, client) VALUES (@@hostname, '{client}'); "
                        "SELECT @@hostname, LAST_INSERT_ID()", timeout=timeout)
    node, _, ident = out.partition("\t")
    return node, int(ident)


# --- HAProxy's view ------------------------------------------------------------------------


def haproxy_servers(node: str, listener: str) -> dict[str, str]:
    """{server: status} of one listener in `node`'s HAProxy (UP, DOWN, 'UP 1/2', MAINT...)."""
    r = core.exec_(node, ["sh", "-c", f"echo 'show stat' | timeout 5 socat stdio UNIX-CONNECT:{HAPROXY_SOCKET}"],
                   timeout=15)
    if r.returncode != 0:
        raise core.LabError(f"{node}: haproxy show stat failed: {r.stderr.strip()}")
    header, out = None, {}
    for line in r.stdout.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
            continue
        if not header or not line.strip():
            continue
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == listener and row.get("svname") not in ("FRONTEND", "BACKEND"):
            out[row["svname"]] = row.get("status", "")
    return out


def wait_server(node: str, listener: str, server: str, status: str, timeout: float = 30) -> float:
    """Seconds until `node`'s HAProxy reports `server` of `listener` exactly `status`."""
    _, elapsed = wait_for(f"{node}'s HAProxy to mark {listener}/{server} {status}",
                          lambda: haproxy_servers(node, listener).get(server) == status, timeout, 0.5)
    return elapsed


# --- the health report ---------------------------------------------------------------------


def pyinfra(*args, env=None, timeout: float = 1500) -> subprocess.CompletedProcess:
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


def verify_report(timeout: float = 180) -> dict:
    """verify.py's JSON health report (ok, vip_holders, failures, facts, ...)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "health.json"
        run = pyinfra("-y", "inventories/lab.py", "verify.py", env={"HA_VERIFY_JSON": str(path)}, timeout=timeout)
        if not path.exists():
            return {"ok": False, "failures": [f"no report (pyinfra exit {run.returncode})"],
                    "output": run.stdout[-3000:]}
        return json.loads(path.read_text())


def galera_synced_count(report: dict) -> int:
    facts = report.get("facts", {})
    return sum(1 for f in facts.values()
               if (f.get("galera") or {}).get("local_state_comment") == "Synced"
               and (f.get("galera") or {}).get("cluster_status") == "Primary")


def rabbit_running(report: dict) -> set[str]:
    facts = report.get("facts", {})
    seen = [set((f.get("rabbitmq") or {}).get("running_nodes") or []) for f in facts.values()]
    return set.intersection(*seen) if seen else set()


def wait_healthy(timeout: float = 300, on_wait=None) -> tuple[dict, float]:
    """Poll the health report until it is OK (every check, 3 Synced, RabbitMQ all running).
    on_wait(): called after each report that is not OK (e.g. to unstick a service)."""
    start = time.monotonic()
    last = {}
    while time.monotonic() - start < timeout:
        last = verify_report()
        if last.get("ok"):
            return last, time.monotonic() - start
        if on_wait:
            on_wait()
        time.sleep(2)
    raise DrillError(f"not healthy after {timeout:.0f}s: " + "; ".join(last.get("failures", []))[:2000])


def deploy(timeout: float = 1500, data: dict | None = None, nodes: list[str] | None = None) -> subprocess.CompletedProcess:
    """deploy.py on the lab; `data`: extra group data for this run (inventories/lab.py
    HA_LAB_DATA), e.g. {"keepalived_unicast": True}; `nodes`: an inventory of only these
    (HA_LAB_NODES)."""
    env = {}
    if data:
        env["HA_LAB_DATA"] = json.dumps(data)
    if nodes:
        env["HA_LAB_NODES"] = ",".join(nodes)
    return pyinfra("-y", "inventories/lab.py", "deploy.py", env=env, timeout=timeout)


def bootstrap_if_no_primary() -> str | None:
    """Galera after a quorum loss, when no running node is in a Primary component: the
    operator's recovery, on the node with the most committed transactions
    (wsrep_last_committed): pc.bootstrap=YES makes it a Primary component of its own that the
    others join. Returns that node, or None when some node is Primary (nothing to do)."""
    states = {}
    for n in running():
        try:
            states[n] = node_sql(n, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                                    "('wsrep_cluster_status','wsrep_last_committed')", timeout=15)
        except (SqlError, core.LabError):
            continue
    parsed = {n: dict(l.split("\t", 1) for l in out.splitlines() if "\t" in l) for n, out in states.items()}
    if not parsed or any(v.get("wsrep_cluster_status") == "Primary" for v in parsed.values()):
        return None
    best = max(parsed, key=lambda n: int(parsed[n].get("wsrep_last_committed") or -1))
    log(f"restore: no Primary component ({parsed}); pc.bootstrap on {best}")
    node_sql(best, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
    return best


def power_on(name: str) -> None:
    """lab.start, tried a second time if the node's first boot dies at once. Seen once in ~40
    starts right after a power cut: the launcher was gone before the node booted
    ("failed to boot", console showing only the previous life); the next start booted."""
    try:
        core.start(name)
    except core.LabError as exc:
        note = f"{name} did not boot ({str(exc)[:160]}): started again"
        log(f"restore: {note}")
        interventions.append((time.strftime("%H:%M:%S"), note))
        time.sleep(2)
        core.start(name)


# What restore() had to do beyond starting things: (time, text), for the drills' reports.
interventions: list[tuple[str, str]] = []


def unstick_rabbitmq(stuck_for: float = 60) -> list[str]:
    """RabbitMQ nodes whose start has hung (unit 'activating' for over `stuck_for` s) are
    restarted; returns them. Seen on the lab after a power cut: Debian 12's RabbitMQ 3.10.8 on
    Erlang 25.2 can hang at boot in `global` name-server synchronisation ('Faking
    nodedown/nodeup' in its log, the "global hang" of rabbitmq-server#6034, whose workaround
    for Erlang >= 25.1 came in later 3.10.x releases); a restart of that node clears it."""
    stuck = []
    for n in running():
        r = core.exec_(n, ["sh", "-c", "systemctl show -p ActiveState --value rabbitmq-server; "
                                       "echo $(( $(date +%s) - $(date -d \"$(systemctl show -p "
                                       "ExecMainStartTimestamp --value rabbitmq-server)\" +%s) ))"],
                       timeout=30)
        lines = r.stdout.split()
        if len(lines) == 2 and lines[0] == "activating" and lines[1].isdigit() and int(lines[1]) > stuck_for:
            stuck.append(n)
    for n in stuck:
        note = (f"RabbitMQ on {n} hung at start (activating for over {stuck_for:.0f}s; "
                "rabbitmq-server#6034 global hang): restarted")
        log(f"restore: {note}")
        interventions.append((time.strftime("%H:%M:%S"), note))
        core.exec_(n, ["timeout", "180", "systemctl", "restart", "rabbitmq-server"], timeout=200)
    return stuck


def restore(timeout: float = 300) -> dict:
    """Put the lab back as the drills found it: every node powered on with its link up, every
    service of the HA layer and every API stand-in running, no node desynced; then wait until
    the health report is OK. Meanwhile a RabbitMQ node hung at start for over a minute is
    restarted; not OK within half of `timeout`: a Galera cluster without a Primary component is
    bootstrapped from its most advanced node (each recorded in `interventions`); still not OK:
    the deploy runs once and the report must be OK then. Returns the report."""
    t0 = time.monotonic()
    for st in core.status():
        if st["state"] != "running":
            power_on(st["name"])
        elif st.get("isolated"):
            core.heal(st["name"])
    for n in running():
        allow_packets(n)
        core.exec_(n, ["sh", "-c",
                       f"rm -rf {backends.DOWN_DIR}; "
                       "systemctl start haproxy keepalived galera-clustercheck lab-responder; "
                       "mysql -e 'SET GLOBAL wsrep_desync=OFF' 2>/dev/null; true"], timeout=120)
    try:
        report, _ = wait_healthy(timeout / 2, on_wait=unstick_rabbitmq)
    except DrillError as exc:
        log(f"restore: {exc}")
        node = bootstrap_if_no_primary()
        if node:
            interventions.append((time.strftime("%H:%M:%S"), f"Galera had no Primary component: pc.bootstrap on {node}"))
        try:
            report, _ = wait_healthy(timeout / 2)
        except DrillError as exc2:
            log(f"restore: {exc2}; running the deploy")
            interventions.append((time.strftime("%H:%M:%S"), f"not healthy after {timeout:.0f}s: deploy run"))
            run = deploy()
            if run.returncode != 0:
                raise DrillError(f"restore: the deploy failed:\n{run.stdout[-4000:]}") from None
            report, _ = wait_healthy(120)
    log(f"restore: healthy in {time.monotonic() - t0:.1f}s; VIP on {', '.join(report.get('vip_holders', []))}")
    return report


# --- clients that run through a whole drill ----------------------------------------------


def drop(session: Session | None, pause: float = 0.2) -> None:
    """Close a session that failed, and pause before the client reconnects."""
    if session is not None:
        session.close()
    time.sleep(pause)


class Client(threading.Thread):
    """A client of the VIP in one session, until stopped: step() after step(); a failed step
    closes the session and the next one opens a new one (to whichever node HAProxy picks)."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.client = name
        self.acked: list[int] = []
        self.failures = 0
        self.stopping = threading.Event()

    def step(self, session: Session) -> None:
        raise NotImplementedError

    def run(self):
        session = None
        while not self.stopping.is_set():
            try:
                if session is None:
                    session = Session()
                self.step(session)
            except (SessionClosed, OSError, ValueError):
                self.failures += 1
                drop(session)
                session = None
        drop(session, 0)


class Writer(Client):
    """Inserts rows into drills.<table>; acked: the ids of the acknowledged ones."""

    def __init__(self, table: str, name: str):
        super().__init__(name)
        self.table = table

    def step(self, session):
        _, ident = write(session, self.table, self.client, timeout=5)
        self.acked.append(ident)
