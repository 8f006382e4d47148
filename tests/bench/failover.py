"""make bench-failover: what a client of the VIP loses when a controller or a service fails.

For each fault, on a deployed lab with the API stand-ins (lab/backends.py), while two paced,
bounded client loops run through the VIP - HTTP GETs to an API (20/s, one connection each,
1 s timeout) and database writes (10/s, a long-lived session that reconnects when it is
closed or a write gets no answer in 5 s, as a connection pool does) - it prints: seconds
until another node held the VIP, failed API requests, the answered ones' latency (p50, p99),
the failed-write window (the longest span from a failed write to the next acknowledged one),
and whether every acknowledged write is in the database afterwards. Every request is recorded
(start, outcome, latency). The lab is restored (every node on, health report OK) after each
fault. Figures, not assertions.

Faults (the VIP placed first, the same start in every profile): HAProxy stopped on the VIP
holder; the holder's power cut (also the DB writer); another holder's link cut; a backend's
power cut (neither the holder nor the writer); the DB writer's power cut, the VIP elsewhere;
and the operator's planned maintenance of the VIP holder, also the DB writer (slug
"maintenance"): `maintenance.py` out, then back, run with pyinfra as tests/lab/test_90 does,
under the profile's data (HA_LAB_DATA, as the deploys); its instant 0 is the start of `out`,
its loops run until `back` returned and SETTLE s went without a failure; its row says each
run's duration, or that it failed. The restore path (after it, and after any error) brings a
controller still marked out back first, as test_90's finally does.

Stale connections (second table): during each fault, clients that hold a connection open run
inside a surviving controller's network namespace (tests/bench/stale_client.py: keep-alive
HTTP connections and a MariaDB session through the VIP, each with a request in flight, and a
direct connection to the failed node's memcached), and the table gives, for each, the seconds
from the fault until the client noticed (its request failed) and until it was served again.
Not for the maintenance: n/a there, not measured (STALE_NA says why).

The whole run is done per profile, in one bench run, the tables giving each fault's profiles
one under the other: "untuned" (the kernel's defaults for the sysctls the deploy sets, HAProxy
without `option srvtcpka`, as in the article), "anchors" (the failover timers of before,
config/defaults.py FAILOVER_ANCHORS: what kolla-ansible and openstack-ansible ship) and
"deployed" (the deploy's defaults). A profile's data reach every deploy and health report of
the bench through HA_LAB_DATA; at the end, also after an error, the lab is deployed with the
defaults again. `--profiles anchors,deployed` runs only those.

`--faults maintenance` (slugs, comma-separated; default all) runs only those faults. With fewer
than all, the results already in --out's records.json are kept: a fault and profile run now
replaces its earlier record, every other is kept, and failover.md and every timeline are
written again from the merged records (records.json keeps each run's figures for that).
`--faults maintenance --profiles anchors,deployed` adds the maintenance rows to a full run's.

Written to --out (docs/bench-failover/): failover.md (both tables, the profiles' values, links
to the timelines), records.json (every request and the tables' figures, per fault and profile;
a records.json written before the figures were kept merges with "?" for its lost writes and
"not recorded" for its stale clients) and one timeline per fault, <fault>.svg
(tests/bench/timeline.py: latency over seconds from the fault, coloured by outcome, one panel
per profile; `python -m tests.bench.timeline .../records.json` redraws them). Exit status 1:
the lab not put back, an acknowledged write lost, or a maintenance run that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills, sitemodel  # noqa: E402
from lab import keystone as lab_keystone  # noqa: E402
from lab.names import CA_FILE  # noqa: E402
from config.defaults import DEFAULTS, FAILOVER_ANCHORS  # noqa: E402
from config.site import MERGED  # noqa: E402
from config.files import MAINTENANCE_FILE  # noqa: E402
from tests.bench.timeline import Request, load_records, longest_ack_gap, percentile, write_svgs  # noqa: E402

API = "keystone_internal"  # the API listener the GETs use (the stand-ins answer GET /?delay=1)
API_BESIDE_KEYSTONE = "nova_api"  # theirs when the lab's keystone owns keystone_internal (make keystone)
TABLE = "bench_failover"
OBSERVE_MAX = 90.0  # s of client loops per fault, at most
SETTLE = 8.0  # s of clean traffic after the last failure before a fault's loops stop
MAX_HTTP = 6000  # requests per fault, at most
MAX_WRITES = 3000
HTTP_PERIOD = 0.05  # s between the starts of two HTTP requests (20/s)
DB_PERIOD = 0.1  # s between the starts of two writes (10/s)
DB_READ_TIMEOUT = 5.0  # s a write may take before the client gives its connection up
KEYSTONE_PERIOD = 0.5  # s between the starts of two keystone calls (2/s), when the lab has keystone
KEYSTONE_TIMEOUT = 5.0  # s one HTTP request of a call may take
MAX_KEYSTONE = 1500
STALE_CAP = 150.0  # s a stale client waits for one answer before the bench calls it "> cap"
HTTP_CONNECTIONS = 4  # keep-alive connections of the stale HTTP client; the table shows the worst
MAINT_TIMEOUT = 600  # s one maintenance run (out, back) may take, as tests/lab/test_90_maintenance.py
# The faults' slugs, in the order they run (and their rows and records are written): --faults
FAULTS = ("haproxy-stopped", "holder-power-cut", "holder-link-cut", "backend-power-cut",
          "db-writer-power-cut", "maintenance", "holder-cut-one-sided", "writer-cut-off")
# The kernel's own values of the settings config/defaults.py tunes, and HAProxy as the article
# configures it: the "untuned" profile (before); "deployed" is the deploy's defaults (after).
KERNEL_DEFAULTS = {"net.ipv4.tcp_keepalive_time": 7200, "net.ipv4.tcp_keepalive_intvl": 75,
                   "net.ipv4.tcp_keepalive_probes": 9, "net.ipv4.tcp_retries2": 15}
# "anchors": the failover timers of before (what kolla-ansible and openstack-ansible ship), the
# rest as deployed; config/defaults.py FAILOVER_ANCHORS, the one source (test_tls renders them).
PROFILES = {"untuned": {"sysctl": KERNEL_DEFAULTS, "haproxy_server_keepalive": False},
            "anchors": FAILOVER_ANCHORS, "deployed": {}}
OUT = ROOT / "docs" / "bench-failover"  # failover.md, records.json, one timeline <fault>.svg each


class StaleClients:
    """tests/bench/stale_client.py inside `witness`'s network namespace (host process, so the
    bench ends it by PID); its JSON lines are collected by a reader thread."""

    def __init__(self, witness: str, direct: str | None, api: str = API):
        argv = ["nsenter", "-t", str(lab.init_pid(witness)), "-n", "--",
                sys.executable, str(Path(__file__).with_name("stale_client.py")),
                "--vip", sitemodel.vip(), "--http-port", str(sitemodel.listen_port(api)),
                "--db-port", str(sitemodel.listen_port("mariadb")),
                "--db-user", sitemodel.data("mariadb_admin_user"), "--cap", str(STALE_CAP),
                "--http-connections", str(HTTP_CONNECTIONS)]
        if sitemodel.vip_url(sitemodel.listen_port(api)).startswith("https:"):
            argv += ["--cafile", str(CA_FILE)]
        if direct:
            argv += ["--direct", f"{sitemodel.node_address(direct)}:{sitemodel.data('memcached_port')}"]
        self.witness, self.direct = witness, direct
        self.events: list[dict] = []
        self.proc = subprocess.Popen(argv, env={**os.environ, "MYSQL_PWD": sitemodel.secret("mariadb_admin_password")},
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    def figures(self, client: str, t0: float) -> tuple[float | None, float | None]:
        """(noticed, served again): seconds after the fault (wall clock t0) of the client's
        first failure and of its first success after that; (None, None): no failure.
        "http": the worst of its connections (the last to notice, the last served again)."""
        if client == "http":
            figs = [self.figures(f"http{i}", t0) for i in range(HTTP_CONNECTIONS)]
            hit = [f for f in figs if f[0] is not None]
            if not hit:
                return None, None
            served = [f[1] for f in hit]
            return max(f[0] for f in hit), (None if None in served else max(served))
        noticed = served = None
        for e in list(self.events):
            if e["client"] != client or e["t"] < t0:
                continue
            if noticed is None and not e["ok"]:
                noticed = e["t"] - t0
            elif noticed is not None and e["ok"]:
                served = e["t"] - t0
                break
        return noticed, served

    def settled(self, t0: float, clients) -> bool:
        """Every client either failed and was served again (the direct one: failed), or has
        been served since the fault without a failure for SETTLE s."""
        for c in clients:
            noticed, served = self.figures(c, t0)
            if c == "direct" and noticed is not None:
                continue  # its node is down until the restore: nothing to serve it before
            if noticed is not None and served is None:
                return False
            names = [f"http{i}" for i in range(HTTP_CONNECTIONS)] if c == "http" else [c]
            if noticed is None and not all(any(e["client"] == n and e["ok"] and e["t"] > t0 + SETTLE
                                               for e in self.events) for n in names):
                return False
        return True

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=5)


@dataclass
class Loop:
    """One client loop's record: (start time, ok, latency) per request, acknowledged write ids."""

    name: str
    cap: int = 0  # requests at most (0: MAX_HTTP or MAX_WRITES)
    events: list = field(default_factory=list)
    acked: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.events if not ok)

    def outage(self) -> float:
        """The longest span from a failed request to the next successful one (0: none failed)."""
        worst, first_fail = 0.0, None
        for t, ok, _ in self.events:
            if not ok and first_fail is None:
                first_fail = t
            elif ok and first_fail is not None:
                worst = max(worst, t - first_fail)
                first_fail = None
        if first_fail is not None and self.events:
            worst = max(worst, self.events[-1][0] - first_fail)
        return worst

    def ack_gap(self) -> float:
        """The longest span between two acknowledgements (a request's start plus its latency,
        for the answered ones): what a client waited for its next write to be acknowledged,
        failed writes and stalled ones alike (issue 22: at most 5 s when the writer loses power)."""
        return longest_ack_gap([(t, ok, lat) for t, ok, lat in self.events])

    def last_failure(self) -> float | None:
        fails = [t for t, ok, _ in self.events if not ok]
        return fails[-1] if fails else None

    def latency(self, q: float) -> float | None:
        """The q-th percentile of the answered requests' latency."""
        return percentile([lat for _, ok, lat in self.events if ok], q)

    def requests(self, kind: str, t0: float) -> list[Request]:
        return [Request(round(t - t0, 3), kind, ok, round(lat, 4)) for t, ok, lat in self.events]


def paced(t: float, period: float) -> None:
    """Sleep until `period` s after `t`: requests start at a steady rate, failed or not."""
    rest = t + period - time.monotonic()
    if rest > 0:
        time.sleep(rest)


def http_loop(loop: Loop, api: str = API) -> None:
    """GETs through the VIP to the listener `api`, paced."""
    while not loop.stop.is_set() and len(loop.events) < (loop.cap or MAX_HTTP):
        t = time.monotonic()
        try:
            drills.http_get(sitemodel.listen_port(api), timeout=1)
            loop.events.append((t, True, time.monotonic() - t))
        except Exception:  # noqa: BLE001 - any failure is a failed request
            loop.events.append((t, False, time.monotonic() - t))
        paced(t, HTTP_PERIOD)


def db_loop(loop: Loop, client: str) -> None:
    """A write's latency includes the reconnection when its session had been given up."""
    session = None
    while not loop.stop.is_set() and len(loop.events) < (loop.cap or MAX_WRITES):
        t = time.monotonic()
        try:
            if session is None:
                session = drills.Session()
            _, ident = drills.write(session, TABLE, client, timeout=DB_READ_TIMEOUT)
            loop.events.append((t, True, time.monotonic() - t))
            loop.acked.append(ident)
        except (drills.SessionClosed, OSError):
            # closed by the server, or no answer within the client's read timeout: reconnect
            loop.events.append((t, False, time.monotonic() - t))
            if session is not None:
                session.close()
            session = None
        paced(t, DB_PERIOD)
    if session is not None:
        session.close()


def keystone_loop(loop: Loop) -> None:
    """keystone through the VIP as a service's client calls it (lab/keystone.py Client: a
    keystoneauth1 session; make keystone): a token issued, then a write, a project created and deleted; one call, failed
    when any of the three failed (a project left by a failed delete is the lab's to drop)."""
    client = lab_keystone.Client(timeout=KEYSTONE_TIMEOUT)
    while not loop.stop.is_set() and len(loop.events) < (loop.cap or MAX_KEYSTONE):
        t = time.monotonic()
        try:
            client.issue_token()
            client.delete_project(client.create_project())
            loop.events.append((t, True, time.monotonic() - t))
        except Exception:  # noqa: BLE001 - any failure is a failed call
            loop.events.append((t, False, time.monotonic() - t))
        paced(t, KEYSTONE_PERIOD)


def witness_for(failing: str) -> str:
    """A running controller that neither fails nor holds the VIP (nor, if it can be helped,
    takes the database writes), the last in inventory order (lowest VRRP priority, so the
    VIP does not move onto it): where the stale-connection clients run."""
    skip = {failing, drills.holder()}
    candidates = [n for n in drills.running() if n not in skip]
    return max(candidates, key=lambda n: (n != writer(), n))


def writer() -> str:
    """The controller that takes the database writes when all are up (config.site.Site.writer:
    the mariadb listener's only server that is not `backup`)."""
    return sitemodel.site().writer


@dataclass
class Fault:
    """One fault of the bench: the VIP is placed on `vip_on` first (the same start in every
    profile), then inject() hits `failing`; heal() (if any) undoes it before the restore (its
    notes, if it returns a list, go with the restore's). `planned`: inject() is the operator's
    commands, run while the loops run, returning their steps (maintenance_step()); the loops
    stop SETTLE s after they returned, and no stale clients run."""

    slug: str  # its timeline's file name
    title: str
    vip_on: str
    failing: str
    inject: Callable[[], object]
    heal: Callable[[], object] | None = None
    vip_moves: bool = True
    direct: bool = True  # a stale client connects straight to `failing`'s memcached
    planned: bool = False


def faults(only: tuple[str, ...] = FAULTS) -> list[Fault]:
    """HAProxy stopped on the VIP holder; the holder's power cut (also the DB writer); a
    holder's link cut (not the writer); a backend's power cut (neither the holder nor the
    writer: HAProxy's retries and observed errors alone); the DB writer's power cut with the
    VIP elsewhere (the database check's timers); the maintenance of the VIP holder, also the
    DB writer (maintenance.py out, then back: the operator's planned take-out). Only those
    whose slug is in `only`."""
    return [f for f in _faults() if f.slug in only]


def _faults() -> list[Fault]:
    nodes = [c.name for c in sitemodel.site().controllers]
    first, second, last = writer(), nodes[1], nodes[-1]
    return [
        Fault("haproxy-stopped", f"HAProxy stopped on the VIP holder ({first})", first, first,
              lambda: drills.systemctl(first, "stop", "haproxy"), direct=False),
        Fault("holder-power-cut", f"VIP holder's power cut ({first}, also the DB writer)", first, first,
              lambda: drills.power_cut(first)),
        Fault("holder-link-cut", f"VIP holder's link cut ({second})", second, second,
              lambda: lab.isolate(second), lambda: lab.heal(second)),
        Fault("backend-power-cut", f"a backend's power cut ({last}; VIP and DB writer on {first})", first, last,
              lambda: drills.power_cut(last), vip_moves=False),
        Fault("db-writer-power-cut", f"DB writer's power cut ({first}), VIP on {second}", second, first,
              lambda: drills.power_cut(first), vip_moves=False),
        Fault("maintenance", f"maintenance of the VIP holder ({first}, also the DB writer): out, then back",
              first, first, lambda: out_and_back(first), bring_back, direct=False, planned=True),
        # Partitions (docs/failover.md "Partitions"): packet filters inside the node's namespace; this
        # host (the clients) still reaches it.
        Fault("holder-cut-one-sided", f"VIP holder cut off one-sided ({last}: its unicast to the others dropped "
              "both ways, its VRRP adverts still heard)", last, last,
              lambda: drills.cut_off(last, [n for n in nodes if n != last], vrrp=True),
              lambda: drills.allow_packets(last), direct=False),
        Fault("writer-cut-off", f"DB writer cut off from the others ({first}, both ways; VIP on {second})", second, first,
              lambda: drills.cut_off(first, [n for n in nodes if n != first], vrrp=False),
              lambda: drills.allow_packets(first), vip_moves=False, direct=False),
    ]


def maintenance_step(action: str, node: str) -> dict:
    """One run of maintenance.py as tests/lab/test_90_maintenance.py runs it, bounded by
    MAINT_TIMEOUT. It inherits this process's HA_LAB_DATA, as the deploys do (use_profile()):
    the profile's data (maintenance_drain_seconds and the rest) reach it. Returns {"action",
    "ok", "seconds", "error"} (error: None, or why it failed; the run's excerpt is printed)."""
    t = time.monotonic()
    try:
        run = drills.pyinfra("-y", "inventories/lab.py", "maintenance.py", "--data", f"node={node}",
                             "--data", f"action={action}", timeout=MAINT_TIMEOUT)
        error = None if run.returncode == 0 else f"exit {run.returncode}"
        if error:
            print(f"bench-failover: maintenance {action} {node} failed:\n{drills.run_excerpt(run.stdout)}",
                  file=sys.stderr)
    except subprocess.TimeoutExpired:
        error = f"not done in {MAINT_TIMEOUT} s"
    except Exception as exc:  # noqa: BLE001 - the row says so, the restore path brings it back
        error = f"{type(exc).__name__}: {exc}"
    drills.log(f"bench: maintenance {action} {node}: {error or 'done'} in {time.monotonic() - t:.1f}s")
    return {"action": action, "ok": error is None, "seconds": round(time.monotonic() - t, 1), "error": error}


def out_and_back(node: str) -> list[dict]:
    """The operator's maintenance of `node`: out, then back (also after a failed out: back
    converges, and the node must not stay out)."""
    return [maintenance_step("out", node), maintenance_step("back", node)]


def marked_out() -> list[str]:
    """The running nodes whose maintenance marker says out."""
    return [n for n in drills.running()
            if lab.exec_(n, ["sh", "-c", f"cat {MAINTENANCE_FILE} 2>/dev/null || true"],
                         timeout=15).stdout.strip() == "1"]


def bring_back() -> list[str]:
    """The restore path (as test_90's finally): every node still marked out brought back;
    returns what was done. DrillError when one stays out (the next fault would start with it
    out)."""
    notes = []
    for n in marked_out():
        step = maintenance_step("back", n)
        notes.append(f"{n} was still in maintenance: back run, " + ("done" if step["ok"] else step["error"]))
    if still := marked_out():
        raise drills.DrillError(f"still in maintenance after `back`: {', '.join(still)}")
    return notes


def vip_move(before: str, t0: float, running: Callable[[], bool]) -> tuple[str | None, float | None]:
    """While the operator's commands run (`running()`): (the node that held the VIP instead of
    `before`, seconds from t0), polled every 0.1 s; (holder, None) if it never moved."""
    while running():
        try:
            h = drills.holders()
        except Exception:  # noqa: BLE001 - a node that did not answer this time: polled again
            h = []
        if len(h) == 1 and h[0] != before:
            return h[0], time.monotonic() - t0
        time.sleep(0.1)
    return drills.holder(), None


def run_fault(f: Fault, keystone: bool = False, api: str = API) -> dict:
    """VIP placed, client loops on, the fault injected, loops until quiet or OBSERVE_MAX (and
    the stale clients settled, or STALE_CAP), heal(), restore. A planned fault: its commands
    run in a thread, the loops until they returned and SETTLE s without a failure (at most
    OBSERVE_MAX more). The loops and the stale clients stop also when this fails."""
    drills.place_vip(f.vip_on)
    stale = None if f.planned else StaleClients(witness_for(f.failing), f.failing if f.direct else None, api)
    stale_clients = ("http", "db") + (("direct",) if f.direct else ())
    # a planned fault's loops run as long as its commands (two maintenance runs at most)
    span = 2 * MAINT_TIMEOUT + OBSERVE_MAX + 10 if f.planned else 0
    http = Loop("http", cap=int(span / HTTP_PERIOD))
    db = Loop("db", cap=int(span / DB_PERIOD))
    ks = Loop("keystone", cap=int(span / KEYSTONE_PERIOD))
    steps: list[dict] = []
    runner = None
    threads = [threading.Thread(target=http_loop, args=(http, api), daemon=True),
               threading.Thread(target=db_loop, args=(db, f.slug), daemon=True)]
    if keystone:
        threads.append(threading.Thread(target=keystone_loop, args=(ks,), daemon=True))
    for th in threads:
        th.start()
    try:
        time.sleep(3)  # clean traffic first
        before = drills.holder()
        t0 = time.monotonic()
        wall0 = time.time()
        vip_moved = None
        new = before
        if f.planned:
            runner = threading.Thread(target=lambda: steps.extend(f.inject()), daemon=True)
            runner.start()
            if f.vip_moves:
                new, vip_moved = vip_move(before, t0, runner.is_alive)
            runner.join(2 * MAINT_TIMEOUT + 60)
            start = time.monotonic()  # the commands' end: SETTLE s without a failure from here
        else:
            f.inject()
            start = t0
            if f.vip_moves:
                try:
                    new, _ = drills.wait_holder(30, other_than=(before,))
                    vip_moved = time.monotonic() - t0
                except drills.DrillError:
                    new = drills.holder()
        # loops run until SETTLE s without a failure in both, at most OBSERVE_MAX
        while time.monotonic() - start < OBSERVE_MAX:
            last = max([x for x in (http.last_failure(), db.last_failure(), ks.last_failure()) if x is not None]
                       or [start])
            if time.monotonic() - max(last, start) > SETTLE and time.monotonic() - start > SETTLE:
                break
            time.sleep(0.5)
        while stale and time.monotonic() - t0 < STALE_CAP + 10 and not stale.settled(wall0, stale_clients):
            time.sleep(0.5)
    finally:
        if stale:
            stale.stop()
        if runner:  # after an error too: the restore path's `back` must not run beside this one
            runner.join(2 * MAINT_TIMEOUT + 60)
        for loop in (http, db, ks):
            loop.stop.set()
        for th in threads:
            th.join(timeout=30)
    stale_figures = stale and {c: stale.figures(c, wall0) if c in stale_clients else None
                               for c in ("http", "db", "direct")}
    if f.planned and not steps:
        steps.append({"action": "out and back", "ok": False, "seconds": None, "error": "did not return (see the log)"})
    healed = f.heal() if f.heal else None
    seen = len(drills.interventions)
    drills.restore()
    restore_notes = (healed if isinstance(healed, list) else []) + [text for _, text in drills.interventions[seen:]]
    ids = {int(x) for x in drills.sql(f"SELECT id FROM {drills.WRITES_DB}.{TABLE}").split()}
    lost = [i for i in db.acked if i not in ids]
    return {
        "slug": f.slug, "fault": f.title, "api_listener": api, "holder": before, "new_holder": new, "vip_moved": vip_moved,
        "http_outage": http.outage(), "http_failed": http.failed, "http_total": len(http.events),
        "api_p50": http.latency(50), "api_p99": http.latency(99),
        "db_outage": db.outage(), "db_ack_gap": db.ack_gap(), "db_failed": db.failed, "db_total": len(db.events),
        "acked": len(db.acked), "lost": len(lost), "restore_notes": restore_notes,
        **(keystone_figures(ks) if keystone else {}),
        "at": time.strftime("%Y-%m-%d %H:%M %Z"),
        "stale": stale_figures, "witness": stale and stale.witness, "steps": steps,
        "requests": http.requests("api", t0) + db.requests("db", t0) + ks.requests("keystone", t0),
    }


def keystone_figures(ks: Loop) -> dict:
    """The keystone loop's figures: calls failed of all, the longest span between two
    answered calls (what a service waited), the answered calls' median latency."""
    return {"ks_failed": ks.failed, "ks_total": len(ks.events), "ks_gap": ks.ack_gap(), "ks_p50": ks.latency(50)}


def fmt(x, unit="s") -> str:
    return "-" if x is None else f"{x:.1f} {unit}"


def ms(x) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


def use_profile(name: str, base: dict) -> None:
    """From now on every pyinfra run of the bench (the deploy here, the health reports and
    the restore's deploy, the lab's site model) sees the profile's data: they go in this
    process's HA_LAB_DATA (inventories/lab.py), which those runs inherit; then the lab is
    deployed with them."""
    set_lab_data(profile_data(name, base))
    run = drills.deploy()
    if run.returncode != 0:
        print(drills.run_excerpt(run.stdout))
        raise SystemExit(f"bench-failover: the deploy with the {name} profile failed")
    drills.log(f"bench: profile '{name}' deployed")


def profile_data(name: str, base: dict) -> dict:
    """HA_LAB_DATA for a profile: its data over `base`, the nested dicts (haproxy_timeouts,
    sysctl) key by key, as the inventory merges them."""
    profile = PROFILES[name]
    return {**base, **profile, **{k: {**base[k], **profile[k]} for k in MERGED
                                  if isinstance(base.get(k), dict) and isinstance(profile.get(k), dict)}}


def run_config(data: dict) -> dict:
    """What a run ran under, kept in its record (figures["config"]; docs/failover.md's rows are
    told apart by it): the failover settings and the stale clients' kernel settings as
    deployed (`data` over the defaults), and the bench's own bounds."""
    def value(key):
        if isinstance(DEFAULTS[key], dict) and isinstance(data.get(key), dict):
            return {**DEFAULTS[key], **data[key]}
        return data.get(key, DEFAULTS[key])
    sysctl = value("sysctl")
    return {**{k: value(k) for k in (*FAILOVER_ANCHORS, "haproxy_server_keepalive")},
            "sysctl": {k: sysctl.get(k) for k in KERNEL_DEFAULTS},
            "stale_cap_s": STALE_CAP, "stale_http_connections": HTTP_CONNECTIONS}


def set_lab_data(data: dict) -> None:
    if data:
        os.environ["HA_LAB_DATA"] = json.dumps(data)
    else:
        os.environ.pop("HA_LAB_DATA", None)


def back_to_defaults(base: dict, restore: bool, redeploy: bool) -> bool:
    """The end of the bench, also after an error: HA_LAB_DATA as it was, the lab restored
    (every node on, healthy; after an error) and deployed with the site's own data (when
    another profile was deployed); a controller left in maintenance is brought back first
    (bring_back()). False, said why, when the lab could not be put back."""
    set_lab_data(base)
    ok = True
    if restore:
        try:
            for note in bring_back():
                drills.log(f"bench: {note}")
        except Exception as exc:  # noqa: BLE001 - the restore below is still tried
            print(f"bench-failover: a controller may be left in maintenance ({exc}): run "
                  "`make maintenance-back NODE=...`", file=sys.stderr)
            ok = False
        try:
            drills.restore()
        except Exception as exc:  # noqa: BLE001 - the deploy below is still tried
            print(f"bench-failover: the lab was not restored: {exc}", file=sys.stderr)
            ok = False
    if redeploy:
        try:
            run = drills.deploy()
            if run.returncode != 0:
                print(drills.run_excerpt(run.stdout), file=sys.stderr)
                raise drills.DrillError("the deploy failed")
            drills.log("bench: the lab is deployed with the defaults again")
        except Exception as exc:  # noqa: BLE001
            print(f"bench-failover: the lab is not back to the defaults ({exc}): run `make deploy`",
                  file=sys.stderr)
            ok = False
    return ok


def by_fault(by_profile: dict[str, list[dict]]) -> list[list[tuple[str, dict]]]:
    """The results grouped per fault (in FAULTS order), each [(profile, result), ...]."""
    groups: dict[str, list] = {}
    for profile, results in by_profile.items():
        for r in results:
            groups.setdefault(r["slug"], []).append((profile, r))
    return sorted(groups.values(), key=lambda g: rank(FAULTS, g[0][1]["slug"]))


def rank(order, name) -> int:
    """`name`'s place in `order` (unknown names last)."""
    return order.index(name) if name in order else len(order)


def steps_note(r: dict) -> str:
    """A planned fault's commands for its row, each with its duration ("out 23.1 s, back
    41.0 s") or FAILED and why; "" for the other faults."""
    return ", ".join(f"{st['action']} {st['seconds']:.1f} s" if st["ok"] else f"{st['action']} FAILED ({st['error']})"
                     for st in r.get("steps") or [])


def ack_gap_of(r: dict) -> float:
    """A result's longest acked-write gap: its figure, or from its DB requests (records kept
    from before the figure was)."""
    if r.get("db_ack_gap") is not None:
        return r["db_ack_gap"]
    return longest_ack_gap([(q.t, q.ok, q.latency) for q in r.get("requests") or [] if q.kind == "db"])


FAILOVER_HEADER = ("fault", "profile", "VIP moved", "API failed", "API p50", "API p99",
                   "failed-write window", "longest acked-write gap", "writes failed", "acked writes lost",
                   "keystone calls failed, longest gap")


def failover_rows(by_profile: dict[str, list[dict]]) -> list[tuple[str, ...]]:
    """One row per fault and profile, the profiles of a fault one under the other."""
    rows = []
    for group in by_fault(by_profile):
        for i, (profile, r) in enumerate(group):
            note = steps_note(r)
            fault = ((r["fault"] if i == 0 else "") + (f" ({note})" if note else "")).strip()
            rows.append((fault, profile,
                        fmt(r["vip_moved"]), f"{r['http_failed']}/{r['http_total']}", ms(r["api_p50"]),
                        ms(r["api_p99"]), fmt(r["db_outage"]), fmt(ack_gap_of(r)), f"{r['db_failed']}/{r['db_total']}",
                        f"{'?' if r['lost'] is None else r['lost']} of {r['acked']}", keystone_cell(r)))
    return rows


def keystone_cell(r: dict) -> str:
    """"3 of 140, 4.2 s"; "-": the run had no keystone calls (the lab without make keystone)."""
    if r.get("ks_total") is None:
        return "-"
    return f"{r['ks_failed']} of {r['ks_total']}, {r['ks_gap']:.1f} s"


STALE_HEADER = ("fault", "profile", "clients on", "keep-alive HTTP", "DB session", "direct memcached")
STALE_NA = ("n/a (maintenance): not measured. The table times the discovery of a peer that went silent (a request "
            "in flight, no answer, no reset: TCP keepalive's job); a planned take-out has none - the node stays up, "
            "the VIP leaves it and its servers are drained and shut by HAProxy - and the writes move twice (out, "
            "back), which one figure per client would not say. What the clients lose is in the first table.")


def stale_rows(by_profile: dict[str, list[dict]]) -> list[tuple[str, ...]]:
    """One row per fault and profile; a planned fault's (no stale clients ran): n/a (STALE_NA),
    a run of a records.json that did not keep the figures: "not recorded"."""
    rows = []
    for group in by_fault(by_profile):
        for i, (profile, r) in enumerate(group):
            st = r["stale"]
            if st is None or not r.get("recorded", True):
                cell = "n/a" if st is None else "not recorded"
                rows.append((r["fault"] if i == 0 else "", profile, cell, cell, cell, cell))
                continue
            where = r["witness"] + (" (new holder)" if r["new_holder"] == r["witness"] and r["vip_moved"] else "")
            rows.append((r["fault"] if i == 0 else "", profile, where, stale_cell(st["http"]),
                         stale_cell(st["db"]), stale_cell(st["direct"])))
    return rows


def console(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) if i < 3 else str(x).rjust(w) for i, (x, w) in
                               enumerate(zip(line, widths))).rstrip() for line in (header, *rows))


def markdown(header, rows) -> str:
    return "\n".join("| " + " | ".join(line) + " |" for line in (header, tuple("---" for _ in header), *rows))


def stale_cell(fig) -> str:
    if fig is None:
        return "-"
    noticed, served = fig
    if noticed is None:
        return "unaffected"
    hung = " (cap)" if noticed >= STALE_CAP - 1 else ""
    return f"{noticed:.1f}/{'-' if served is None else f'{served:.1f}'}{hung}"


def profile_lines(names) -> list[str]:
    """What each profile run sets, from the data themselves."""
    lines = []
    for name in names:
        data = PROFILES[name]
        if name == "untuned":
            text = (", ".join(f"{k.split('.')[-1]}={v}" for k, v in KERNEL_DEFAULTS.items())
                    + "; HAProxy without option srvtcpka")
        elif data:
            text = ", ".join(f"{k}={v!r}" for k, v in data.items())
        else:
            text = ("the deploy's defaults: " + ", ".join(f"{k}={DEFAULTS[k]!r}" for k in FAILOVER_ANCHORS)
                    + ", " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in DEFAULTS["sysctl"].items()
                                       if k in KERNEL_DEFAULTS))
        lines.append(f"{name}: {text}")
    return lines


LEGEND = [
    "VIP moved: seconds from the fault until another node held the VIP ('-': it did not have to move).",
    f"API failed: failed / all HTTP GETs through the VIP ({1 / HTTP_PERIOD:.0f}/s, one connection each, 1 s "
    f"timeout), from 3 s before the fault until both client loops had gone {SETTLE:.0f} s without a failure and "
    f"the stale clients had settled (at most {STALE_CAP + 10:.0f} s).",
    "API p50 / p99: latency of the answered GETs over the same span.",
    f"failed-write window: the longest span from a failed DB write ({1 / DB_PERIOD:.0f}/s, reconnecting session, "
    f"{DB_READ_TIMEOUT:.0f} s read timeout) to the next acknowledged one.",
    "longest acked-write gap: the longest span between two acknowledged DB writes (each write's start plus its "
    "latency): the failed writes and the ones that waited for an answer, together.",
    "acked writes lost: acknowledged writes missing from the database afterwards (every one must be there; "
    "'?': not in an earlier records.json).",
    f"keystone calls failed, longest gap (when the lab has keystone: make keystone): calls through the VIP by "
    "keystoneauth1, the client library of OpenStack's services "
    f"({1 / KEYSTONE_PERIOD:.0f}/s; each a token issued and a project created and deleted, {KEYSTONE_TIMEOUT:.0f} s "
    "per request) failed of all, and the longest span between two answered calls.",
    "maintenance: the fault instant is the start of `maintenance.py action=out` (pyinfra reads every controller "
    "before the marker is written: 'VIP moved' includes that); `action=back` follows when out returned; the loops "
    f"run until back returned and both had gone {SETTLE:.0f} s without a failure (at most {OBSERVE_MAX:.0f} s more); "
    "in brackets each run's duration, or FAILED and why. The profile's data (maintenance_drain_seconds, ...) "
    "reach both runs through HA_LAB_DATA.",
]


def records_of(by_profile: dict[str, list[dict]]) -> dict:
    """records.json's content: {slug: {"fault": title, "runs": [{"profile", "vip_moved",
    "requests", "figures"}, ...]}}; "figures": the rest of the result (what the tables need
    beyond the requests: lost writes, stale clients, the maintenance runs, ...)."""
    return {group[0][1]["slug"]: {"fault": group[0][1]["fault"], "runs": [
        {"profile": profile, "vip_moved": r["vip_moved"], "requests": r["requests"],
         "figures": {k: v for k, v in r.items() if k not in ("slug", "fault", "vip_moved", "requests")}}
        for profile, r in group]} for group in by_fault(by_profile)}


def results_of(records: dict) -> dict[str, list[dict]]:
    """records.json (timeline.load_records) back to results per profile, as run_fault gives
    them. A run without "figures" (written before they were kept): the figures the requests
    give (figures_of()), the rest unknown."""
    by_profile: dict[str, list[dict]] = {}
    for slug, fault in records.items():
        for run in fault["runs"]:
            figures = run.get("figures") or figures_of(run["requests"])
            by_profile.setdefault(run["profile"], []).append(
                {**figures, "slug": slug, "fault": fault["fault"], "vip_moved": run["vip_moved"],
                 "requests": run["requests"]})
    return by_profile


def figures_of(requests: list[Request]) -> dict:
    """A run's figures from its requests alone (counts, latency, failed-write window, the
    acknowledged writes); lost writes, stale clients and the holders are not in them."""
    loops = {kind: Loop(kind, events=[(r.t, r.ok, r.latency) for r in sorted(requests) if r.kind == kind])
             for kind in ("api", "db", "keystone")}
    http, db = loops["api"], loops["db"]
    return {**(keystone_figures(loops["keystone"]) if loops["keystone"].events else {}),
            "http_outage": http.outage(), "http_failed": http.failed, "http_total": len(http.events),
            "api_p50": http.latency(50), "api_p99": http.latency(99), "db_outage": db.outage(), "db_ack_gap": db.ack_gap(),
            "db_failed": db.failed, "db_total": len(db.events), "acked": len(db.events) - db.failed,
            "lost": None, "restore_notes": [], "stale": {}, "witness": None, "holder": None,
            "new_holder": None, "steps": [], "recorded": False}


def merge(earlier: dict[str, list[dict]], now: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The results of an earlier run (results_of its records.json) with this run's: a fault
    and profile run now replaces its earlier result, every other earlier one is kept;
    profiles in PROFILES order, faults in FAULTS order."""
    runs = {(p, r["slug"]): r for by in (earlier, now) for p, results in by.items() for r in results}
    profiles = sorted({p for p, _ in runs}, key=lambda p: rank(list(PROFILES), p))
    return {p: sorted((r for (q, _), r in runs.items() if q == p), key=lambda r: rank(FAULTS, r["slug"]))
            for p in profiles}


def earlier_results(out: Path) -> dict[str, list[dict]]:
    """The results in `out`/records.json ({} when there is none)."""
    path = out / "records.json"
    return results_of(load_records(path)) if path.exists() else {}


def report(by_profile: dict[str, list[dict]], out: Path, complete: bool, kept: tuple[str, ...] = ()) -> None:
    """Both tables on stdout; in `out`: failover.md (the tables, the profiles, links to the
    timelines), records.json (every request and the tables' figures, per fault and profile)
    and <fault>.svg each. `kept`: the faults of `by_profile` not run now (merged from the
    earlier records.json), named in the title."""
    rows, stale = failover_rows(by_profile), stale_rows(by_profile)
    print()
    print(console(FAILOVER_HEADER, rows))
    for profile, results in by_profile.items():
        for r in results:
            for note in r["restore_notes"]:
                print(f"  restoring after '{r['fault']}' ({profile}): {note}")
    print("\n" + "\n".join(LEGEND))
    stale_title = (f"Stale connections: seconds after the fault until the client noticed / was served again "
                   f"(run on a surviving controller; 'cap': no answer for {STALE_CAP:.0f} s, the bench stopped "
                   f"waiting; keep-alive HTTP: the worst of {HTTP_CONNECTIONS} connections)")
    print(f"\n{stale_title}")
    print(console(STALE_HEADER, stale))
    planned = any(r["stale"] is None for results in by_profile.values() for r in results)
    if planned:
        print(STALE_NA)
    print("\n" + "\n".join(profile_lines(by_profile)))

    records = records_of(by_profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.json").write_text(json.dumps(records, separators=(",", ":")) + "\n")
    svgs = write_svgs(records, out)
    md = [f"# make bench-failover, {time.strftime('%Y-%m-%d %H:%M %Z')}"
          + ("" if complete else " (stopped by an error: partial)")
          + (f" (kept from the earlier records.json: {', '.join(kept)})" if kept else ""), "",
          markdown(FAILOVER_HEADER, rows), "", *[f"- {line}" for line in LEGEND], "",
          "Timelines (every request through the VIP, per profile): "
          + ", ".join(f"[{p.stem}]({p.name})" for p in svgs), "",
          stale_title + ":", "", markdown(STALE_HEADER, stale), "", *([STALE_NA, ""] if planned else []),
          "Profiles:", "", *[f"- {line}" for line in profile_lines(by_profile)], ""]
    (out / "failover.md").write_text("\n".join(md))
    print(f"\nwritten: {out / 'failover.md'}, {out / 'records.json'}, " + ", ".join(str(p) for p in svgs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help="profiles to run, in order (untuned: the kernel's defaults and the article's "
                         "HAProxy; anchors: the failover timers of before; deployed: the deploy's defaults)")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="faults to run (slugs, run in the bench's order; default all). Fewer than all: the "
                         "other faults' records and rows in --out are kept (merged)")
    ap.add_argument("--out", type=Path, default=OUT,
                    help=f"where the tables, the records and the timelines go (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    if not profiles:
        raise SystemExit(f"bench-failover: --profiles names none (known: {', '.join(PROFILES)})")
    for p in profiles:
        if p not in PROFILES:
            raise SystemExit(f"bench-failover: unknown profile {p!r} (known: {', '.join(PROFILES)})")
    only = tuple(f for f in args.faults.split(",") if f)
    for f in only:
        if f not in FAULTS:
            raise SystemExit(f"bench-failover: unknown fault {f!r} (known: {', '.join(FAULTS)})")
    # read before the lab is touched: an unreadable records.json stops the bench, not its report
    # (a run of every fault and every profile replaces them all; any fewer keeps the others)
    earlier = earlier_results(args.out) if (set(only), set(profiles)) != (set(FAULTS), set(PROFILES)) else {}
    base = json.loads(os.environ.get("HA_LAB_DATA") or "{}")
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
    keystone = lab_keystone.installed()
    api = API_BESIDE_KEYSTONE if keystone else API  # the lab's keystone owns keystone_internal
    drills.log("bench: keystone " + (f"answers through the VIP: its calls are a client loop; the GETs go to {api}"
                                     if keystone else "not installed (make keystone): no keystone loop"))

    by_profile: dict[str, list[dict]] = {}
    complete = restored = False
    try:
        for profile in profiles:
            by_profile[profile] = results = []
            use_profile(profile, base)
            for f in faults(only):
                drills.log(f"bench: {f.title} ({profile})")
                results.append({**run_fault(f, keystone, api), "config": run_config(profile_data(profile, base))})
        complete = True
    finally:
        # deployed again unless the last profile was the defaults and all went well
        restored = back_to_defaults(base, restore=not complete,
                                    redeploy=not complete or bool(PROFILES[list(by_profile)[-1]]))
        if any(by_profile.values()):
            run_now = {r["slug"] for rs in by_profile.values() for r in rs}
            kept = tuple(slug for slug in dict.fromkeys(r["slug"] for rs in earlier.values() for r in rs)
                         if slug not in run_now)
            report(merge(earlier, by_profile), args.out, complete, kept)
    lost = any(r["lost"] for rs in by_profile.values() for r in rs)
    failed = any(not st["ok"] for rs in by_profile.values() for r in rs for st in r["steps"])
    return 0 if restored and not lost and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
