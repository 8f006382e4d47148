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

Stale connections (second table): during each fault, clients that hold a connection open run
inside a surviving controller's network namespace (tests/bench/stale_client.py: keep-alive
HTTP connections and a MariaDB session through the VIP, each with a request in flight, and a
direct connection to the failed node's memcached), and the table gives, for each, the seconds
from the fault until the client noticed (its request failed) and until it was served again.
The whole run is done twice: "untuned" (the kernel's defaults for the sysctls the deploy sets,
HAProxy without `option srvtcpka`, as in the article) and "deployed" (the deploy's defaults);
`--profiles deployed` runs only the second.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from lab import backends, drills, sitemodel  # noqa: E402
from lab.names import CA_FILE  # noqa: E402

API = "keystone_internal"  # the API listener the clients use
TABLE = "bench_failover"
OBSERVE_MAX = 90.0  # s of client loops per fault, at most
SETTLE = 8.0  # s of clean traffic after the last failure before a fault's loops stop
MAX_HTTP = 6000  # requests per fault, at most
MAX_WRITES = 3000
HTTP_PERIOD = 0.05  # s between the starts of two HTTP requests (20/s)
DB_PERIOD = 0.1  # s between the starts of two writes (10/s)
DB_READ_TIMEOUT = 5.0  # s a write may take before the client gives its connection up
STALE_CAP = 150.0  # s a stale client waits for one answer before the bench calls it "> cap"
HTTP_CONNECTIONS = 4  # keep-alive connections of the stale HTTP client; the table shows the worst
# The kernel's own values of the settings config/defaults.py tunes, and HAProxy as the article
# configures it: the "untuned" profile (before); "deployed" is the deploy's defaults (after).
KERNEL_DEFAULTS = {"net.ipv4.tcp_keepalive_time": 7200, "net.ipv4.tcp_keepalive_intvl": 75,
                   "net.ipv4.tcp_keepalive_probes": 9, "net.ipv4.tcp_retries2": 15}
PROFILES = {"untuned": {"sysctl": KERNEL_DEFAULTS, "haproxy_server_keepalive": False}, "deployed": {}}


class StaleClients:
    """tests/bench/stale_client.py inside `witness`'s network namespace (host process, so the
    bench ends it by PID); its JSON lines are collected by a reader thread."""

    def __init__(self, witness: str, direct: str | None):
        argv = ["nsenter", "-t", str(lab.init_pid(witness)), "-n", "--",
                sys.executable, str(Path(__file__).with_name("stale_client.py")),
                "--vip", sitemodel.vip(), "--http-port", str(sitemodel.listen_port(API)),
                "--db-port", str(sitemodel.listen_port("mariadb")),
                "--db-user", sitemodel.data("mariadb_admin_user"), "--cap", str(STALE_CAP),
                "--http-connections", str(HTTP_CONNECTIONS)]
        if sitemodel.vip_url(sitemodel.listen_port(API)).startswith("https:"):
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
            drills.http_get(sitemodel.listen_port(API), timeout=1)
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


def witness_for(failing: str) -> str:
    """A running controller that neither fails nor holds the VIP (nor, if it can be helped,
    takes the database writes), the last in inventory order (lowest VRRP priority, so the
    VIP does not move onto it): where the stale-connection clients run."""
    skip = {failing, drills.holder()}
    candidates = [n for n in drills.running() if n not in skip]
    return max(candidates, key=lambda n: (n != "node01", n))


def run_fault(name: str, inject, heal=None, vip_moves: bool = True, failing: str | None = None,
              direct: bool = True) -> dict:
    """Client loops on, the fault injected, loops until quiet or OBSERVE_MAX (and the stale
    clients settled, or STALE_CAP), heal(), restore."""
    failing = failing or drills.holder()
    stale = StaleClients(witness_for(failing), failing if direct else None)
    stale_clients = ("http", "db") + (("direct",) if direct else ())
    http = Loop("http")
    db = Loop("db")
    threads = [threading.Thread(target=http_loop, args=(http,), daemon=True),
               threading.Thread(target=db_loop, args=(db, name[:30]), daemon=True)]
    for th in threads:
        th.start()
    time.sleep(3)  # clean traffic first
    before = drills.holder()
    t0 = time.monotonic()
    wall0 = time.time()
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
    while time.monotonic() - t0 < STALE_CAP + 10 and not stale.settled(wall0, stale_clients):
        time.sleep(0.5)
    stale.stop()
    stale_figures = {c: stale.figures(c, wall0) if c in stale_clients else None for c in ("http", "db", "direct")}
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
        "stale": stale_figures, "witness": stale.witness,
    }


def fmt(x, unit="s") -> str:
    return "-" if x is None else f"{x:.1f} {unit}"


def set_profile(name: str) -> None:
    """Deploy the lab with a profile's extra data (untuned, or the deploy's own defaults)."""
    run = drills.deploy(data=PROFILES[name])
    if run.returncode != 0:
        print(run.stdout[-4000:])
        raise SystemExit(f"bench-failover: the deploy with the {name} profile failed")
    drills.log(f"bench: profile '{name}' deployed")


def run_faults() -> list[dict]:
    faults = [
        ("haproxy stopped on the VIP holder", lambda h: drills.systemctl(h, "stop", "haproxy"), None, False),
        ("VIP holder power cut", lambda h: drills.power_cut(h), None, True),
        ("VIP holder link cut", lambda h: lab.isolate(h), lambda h: lab.heal(h), True),
    ]
    results = []
    for name, inject, heal, direct in faults:
        drills.log(f"bench: {name}")
        results.append(run_fault(name, inject, heal, direct=direct))
    # the active database node (node01) loses power while the VIP is elsewhere
    drills.log("bench: active database node power cut")
    if drills.holder() == "node01":
        drills.place_vip("node02")
    results.append(run_fault("active DB node (node01) power cut, VIP elsewhere",
                             lambda h: drills.power_cut("node01"), vip_moves=False, failing="node01"))
    return results


def print_failover(results: list[dict]) -> None:
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


def stale_cell(fig) -> str:
    if fig is None:
        return "-"
    noticed, served = fig
    if noticed is None:
        return "unaffected"
    hung = " (cap)" if noticed >= STALE_CAP - 1 else ""
    return f"{noticed:.1f}/{'-' if served is None else f'{served:.1f}'}{hung}"


def print_stale(by_profile: dict[str, list[dict]]) -> None:
    print(f"\nStale connections: seconds after the fault until the client noticed / was served again "
          f"(run on a surviving controller; 'cap': no answer for {STALE_CAP:.0f} s, the bench stopped waiting;\n"
          f"keep-alive HTTP: the worst of {HTTP_CONNECTIONS} connections)")
    print(f"{'fault':<62} {'profile':<9} {'clients on':<16} {'keep-alive HTTP':>16} {'DB session':>16} "
          f"{'direct memcached':>17}")
    for profile, results in by_profile.items():
        for r in results:
            st = r["stale"]
            where = r["witness"] + (" (new holder)" if r["new_holder"] == r["witness"] and r["vip_moved"] else "")
            print(f"{r['fault']:<62} {profile:<9} {where:<16} {stale_cell(st['http']):>16} {stale_cell(st['db']):>16} "
                  f"{stale_cell(st['direct']):>17}")
    from config.defaults import DEFAULTS
    print("untuned: " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in KERNEL_DEFAULTS.items())
          + "; HAProxy without option srvtcpka")
    print("deployed: " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in DEFAULTS["sysctl"].items()
                                   if k in KERNEL_DEFAULTS)
          + f"; HAProxy {'with' if DEFAULTS['haproxy_server_keepalive'] else 'without'} option srvtcpka")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="untuned,deployed",
                    help="profiles to run, in order (untuned: the kernel's defaults and the article's "
                         "HAProxy; deployed: the deploy's defaults)")
    args = ap.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in PROFILES:
            raise SystemExit(f"bench-failover: unknown profile {p!r} (known: {', '.join(PROFILES)})")
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

    by_profile = {}
    try:
        for profile in profiles:
            set_profile(profile)
            by_profile[profile] = run_faults()
    finally:
        if profiles != ["deployed"]:
            set_profile("deployed")  # leave the lab as the deploy makes it
    for profile, results in by_profile.items():
        print(f"\n== profile: {profile}")
        print_failover(results)
    print("\nVIP moved: seconds from the fault until another node held the VIP ('-': it did not "
          "have to move).\nOutage: the longest span from a failed request to the next success, "
          "as the client saw it.\nlost: acknowledged writes missing from the database afterwards "
          "(every one must be there).")
    print_stale(by_profile)
    return 0 if all(r["lost"] == 0 for rs in by_profile.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
