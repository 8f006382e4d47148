"""The soak's nemesis: which faults, in what order, for how long (pure, seeded: schedule()),
and how each is injected into the lab and healed (Nemesis, LAB ONLY).

A fault's target is chosen when it starts, from what the lab is then (the writer is the node
a new connection through the VIP lands on, the holder the node with the VIP), never assumed.
Heal, then recover as an operator would with this project: wait for the layer to heal by
itself; if it has not within RECOVER_ALONE s, run the deploy (the product's recovery, e.g.
Galera's bootstrap after every node lost power); if that does not make it healthy either,
the lab's own restore() puts it back and the soak counts an intervention: a recovery the
product did not make.

Kinds on any lab (3 nodes or more):
    power-cut          one node's power cut (its link first, then its processes)
    power-cut-writer   the database writer's
    power-cut-holder   the VIP holder's
    power-cut-all      every node within a second (a site's power loss); heals by the deploy
    link-cut           one node's link down (it runs on, alone)
    partition-one      one node cut off from the others both ways (clients still reach it)
    pause-mariadbd     SIGSTOP of one node's mariadbd for 1-8 s (around evs.suspect_timeout)
    pause-erlang       SIGSTOP of one node's Erlang VM (beam.smp) for 1-8 s
    haproxy-kill       HAProxy SIGKILLed on the VIP holder (systemd starts it again)
    netem              one node's link: 50 +- 20 ms of delay and 2 % packet loss (a kernel
                       without sch_netem: 2 % loss each way by nftables, egress at 4 Mbit/s
                       queued up to 100 ms by tbf)
    deploy-in-fault    a node's power cut, then the deploy runs meanwhile: it must refuse or
                       converge, never print a traceback, never split a cluster
On 4 or 5 nodes also:
    partition-halves   the nodes in two halves (2|2, 2|3), each cut off from the other
    majority-ring      each node sees only its two neighbours on a ring (Jepsen's majorities-ring)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from config.defaults import DEFAULTS

BASIC = ("power-cut", "power-cut-writer", "power-cut-holder", "power-cut-all", "link-cut", "partition-one",
         "pause-mariadbd", "pause-erlang", "haproxy-kill", "netem", "deploy-in-fault")
WIDE = ("partition-halves", "majority-ring")  # 4 nodes or more
HOLD = (10.0, 30.0)  # seconds a fault lasts (a pause: PAUSE)
PAUSE = (1.0, 8.0)
QUIET = (5.0, 20.0)  # seconds of no fault between two (after the recovery)
# seconds the layer gets to heal by itself before the deploy runs: as long as a hung RabbitMQ
# start (rabbitmq-server#6034) takes to heal without a deploy: systemd's bound of the start (the
# default rabbitmq_start_timeout: the lab keeps it), then the unit's RestartSec (its drop-in,
# files/templates/rabbitmq/rabbitmq-server.service.conf.j2), then a start (30 s allowed, ~6 s on the lab).
# 160 s with the default of 120; a change of the default moves it.
RABBITMQ_RESTART_SEC = 10
A_START = 30
RECOVER_ALONE = DEFAULTS["rabbitmq_start_timeout"] + RABBITMQ_RESTART_SEC + A_START
# netem's stand-in where the kernel has no sch_netem: 2 % of packets dropped each way (a table of
# its own, before the node's firewall), egress at 4 Mbit/s with up to 100 ms queued.
LOSSY_TABLE = "soak_lossy"
LOSSY_NFT = (f"nft 'add table inet {LOSSY_TABLE}; "
             + "; ".join(f"add chain inet {LOSSY_TABLE} {c} {{ type filter hook {hook} priority -5; }}; "
                         f"add rule inet {LOSSY_TABLE} {c} numgen random mod 100 < 2 drop"
                         for c, hook in (("i", "input"), ("o", "output"))) + "'")
SLOW_QDISC = "tbf rate 4mbit burst 32kbit latency 100ms"


def kinds(nodes: int) -> tuple[str, ...]:
    return BASIC + (WIDE if nodes >= 4 else ())


@dataclass
class Planned:
    """A fault to come: its kind, how long it lasts, the quiet time after its recovery."""

    kind: str
    hold: float
    quiet: float


def schedule(seed: int, minutes: float, nodes: int, only: tuple[str, ...] = ()) -> list[Planned]:
    """Faults for a soak of `minutes` on `nodes` nodes, in order: each kind once in a shuffled
    round, then the next round (every kind is met early, also in a short soak); `only`: these
    kinds. The sum of holds and quiets fills the time (recoveries come on top)."""
    rng = random.Random(seed)
    pool = list(only or kinds(nodes))
    unknown = set(pool) - set(kinds(nodes))
    if unknown:
        raise ValueError(f"fault kinds not possible on {nodes} nodes: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(kinds(nodes))})")
    out, budget = [], minutes * 60
    while budget > 0:
        rng.shuffle(pool)
        for kind in pool:
            hold = rng.uniform(*(PAUSE if kind.startswith("pause-") else HOLD))
            quiet = rng.uniform(*QUIET)
            out.append(Planned(kind, round(hold, 1), round(quiet, 1)))
            budget -= hold + quiet
            if budget <= 0:
                break
    return out


def halves(names: list[str]) -> tuple[list[str], list[str]]:
    """Two halves, the smaller first (2|2 of 4, 2|3 of 5)."""
    k = len(names) // 2
    return names[:k], names[k:]


def ring_peers(names: list[str]) -> dict[str, list[str]]:
    """On a ring, the nodes each one must NOT see (all but its two neighbours)."""
    n = len(names)
    return {name: [o for j, o in enumerate(names) if j != i and (j - i) % n not in (1, n - 1)]
            for i, name in enumerate(names)}


# --- on the lab -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one fault did: its detail for the history, how it was recovered, a problem the
    runner must report (a traceback in a deploy, an intervention)."""

    detail: dict = field(default_factory=dict)
    recovered_by: str = ""  # "itself" | "deploy" | "intervention"
    recovery_s: float = 0.0
    problems: list[str] = field(default_factory=list)


class Nemesis:
    """Injects and heals the faults on the lab (lab.drills). One fault at a time."""

    def __init__(self, rng: random.Random, log=print):
        import lab  # the lab: imported when a soak runs
        from lab import drills
        self.drills, self.exec_, self.rng, self.log = drills, lab.exec_, rng, log  # exec_(node, "sh command")
        self.healers: list = []  # what undoes the fault in force, last first

    # targets
    def nodes(self) -> list[str]:
        return sorted(self.drills.running())

    def writer(self) -> str:
        return self.drills.db_node() or self.rng.choice(self.nodes())

    def holder(self) -> str:
        return self.drills.holder() or self.rng.choice(self.nodes())

    def _daemon_pid(self, node: str, unit: str) -> str:
        """The main process of `unit` on `node` (mariadbd; the broker's Erlang VM, not a CLI
        VM of rabbitmqctl's). Matching by command line instead stopped the shell that ran
        pkill (its own command line names beam.smp), and with it the heal."""
        pid = self.exec_(node, ["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.strip()
        if not pid.isdigit() or pid == "0":
            raise RuntimeError(f"{node}: {unit} has no main process to pause (MainPID {pid or 'unknown'})")
        return pid

    # faults: each returns its detail and registers its heal
    def _power(self, nodes: list[str]) -> dict:
        self.drills.power_cut(*nodes)
        self.healers.append(lambda: [self.drills.power_on(n) for n in nodes if n not in self.drills.running()])
        return {"nodes": nodes}

    def _cut(self, node: str, peers: list[str]) -> None:
        self.drills.cut_off(node, peers, vrrp=False)
        self.healers.append(lambda: self.drills.allow_packets(node))

    def inject(self, kind: str, hold: float) -> dict:
        names = self.nodes()
        if kind == "power-cut":
            return self._power([self.rng.choice(names)])
        if kind == "power-cut-writer":
            return self._power([self.writer()])
        if kind == "power-cut-holder":
            return self._power([self.holder()])
        if kind == "power-cut-all":
            return self._power(names)
        if kind == "link-cut":
            from lab import lifecycle
            node = self.rng.choice(names)
            lifecycle.isolate(node)
            self.healers.append(lambda: lifecycle.heal(node))
            return {"node": node}
        if kind == "partition-one":
            node = self.rng.choice(names)
            self._cut(node, [n for n in names if n != node])
            return {"node": node}
        if kind == "partition-halves":
            a, b = halves(self.rng.sample(names, len(names)))
            for node in a:
                self._cut(node, b)
            return {"halves": [a, b]}
        if kind == "majority-ring":
            order = self.rng.sample(names, len(names))
            for node, unseen in ring_peers(order).items():
                self._cut(node, unseen)
            return {"ring": order}
        if kind in ("pause-mariadbd", "pause-erlang"):
            node = self.rng.choice(names)
            pid = self._daemon_pid(node, "mariadb" if kind == "pause-mariadbd" else "rabbitmq-server")
            # the healer first: a pause whose command failed half-way is still undone
            self.healers.append(lambda: self.exec_(node, ["kill", "-CONT", pid]))
            self.exec_(node, ["kill", "-STOP", pid])
            return {"node": node, "pid": int(pid), "seconds": hold}
        if kind == "haproxy-kill":
            node = self.holder()
            self.exec_(node, "pkill -KILL -x haproxy")
            self.healers.append(lambda: self.drills.systemctl(node, "start", "haproxy"))
            return {"node": node}
        if kind == "netem":
            import lab
            node = self.rng.choice(names)
            dev = f"$(ip -o -4 addr show to {lab.address(node)} | awk '{{print $2}}')"  # its link on the lab bridge
            r = self.exec_(node, f"tc qdisc replace dev {dev} root netem delay 50ms 20ms loss 2%")
            if r.returncode == 0:
                self.healers.append(lambda: self.exec_(node, f"tc qdisc del dev {dev} root"))
                return {"node": node, "delay_ms": 50, "jitter_ms": 20, "loss_percent": 2}
            # A kernel without sch_netem (this machine's: "Specified qdisc kind is unknown"): the
            # loss from nftables' random numbers both ways, the delay from a slow egress queue.
            r = self.exec_(node, f"{LOSSY_NFT} && tc qdisc replace dev {dev} root {SLOW_QDISC}")
            self.healers.append(lambda: self.exec_(node, f"nft delete table inet {LOSSY_TABLE}; tc qdisc del dev {dev} root"))
            if r.returncode != 0:
                raise RuntimeError(f"{node}: neither netem nor nftables and tbf: {(r.stdout + r.stderr).strip()[:300]}")
            return {"node": node, "loss_percent": 2, "egress": SLOW_QDISC, "netem": False}
        if kind == "deploy-in-fault":
            node = self.rng.choice([n for n in names if n != self.writer()] or names)
            detail = self._power([node])
            run = self.drills.deploy()
            detail.update(deploy_rc=run.returncode, traceback="Traceback" in run.stdout,
                          refused=run.returncode != 0)
            if detail["traceback"]:  # kept for the report: where it came from
                at = run.stdout.index("Traceback")
                detail["traceback_text"] = run.stdout[max(0, at - 300):at + 3000]
            return detail
        raise ValueError(f"unknown fault kind {kind!r}")

    def heal(self) -> None:
        while self.healers:
            undo = self.healers.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - every heal is tried; the recovery judges
                self.log(f"nemesis: a heal failed: {exc}")

    def recover(self, bound: float = 900) -> tuple[str, float]:
        """The layer healthy again: by itself, else by the deploy, else by the lab's restore
        (an intervention). (how, seconds)."""
        d, t0 = self.drills, time.monotonic()
        try:
            d.wait_healthy(RECOVER_ALONE)
            return "itself", time.monotonic() - t0
        except d.DrillError as exc:  # what did not heal by itself: the run's log says why the deploy ran
            self.log(f"nemesis: not healed by itself, the deploy runs: {exc}"[:600])
        run = d.deploy()
        if run.returncode == 0:
            try:
                d.wait_healthy(180)
                return "deploy", time.monotonic() - t0
            except d.DrillError:
                pass
        else:
            self.log("nemesis: the recovery deploy failed:\n" + d.run_excerpt(run.stdout))
        d.restore(timeout=max(120, bound - (time.monotonic() - t0)))
        return "intervention", time.monotonic() - t0
