"""keepalived: whether this node holds the VIP, and keepalived's own VRRP state."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from facts.probe import NO_OUTPUT, failure, probe, split_probe


class VipHolder(FactBase):
    """Whether this node holds the VIP on the VIP interface, and its IPv4 addresses there.

    .. code:: python

        {"holds_vip": True, "vip": "10.77.0.100", "interface": "enp8s0f0",
         "addresses": ["10.77.0.11/24", "10.77.0.100/32"], "error": None}
    """

    @staticmethod
    def default():
        return {"holds_vip": False, "vip": None, "interface": None, "addresses": [], "error": NO_OUTPUT}

    def command(self, interface: str, vip: str):
        return probe(
            "ip",
            f"timeout 5 ip -o -4 addr show dev {shlex.quote(interface)}",
            {"vip": vip, "interface": interface},
        )

    def process(self, output):
        body, rc, missing, args = split_probe(output)
        result = {
            "holds_vip": False,
            "vip": args.get("vip"),
            "interface": args.get("interface"),
            "addresses": [],
            "error": failure(body, rc, missing, f"ip addr show dev {args.get('interface')}"),
        }
        if result["error"]:
            return result
        for line in body:
            words = line.split()
            if "inet" in words and words.index("inet") + 1 < len(words):
                result["addresses"].append(words[words.index("inet") + 1])
        result["holds_vip"] = any(a.split("/")[0] == result["vip"] for a in result["addresses"])
        return result


# keepalived's SIGUSR1 dumps (its data, and its parent's): they hold the configuration, the VRRP
# password too (0600, root's, but left in /tmp): removed before the signal and after the read,
# also when the read is cut (the trap).
DUMP = "/tmp/keepalived.data"
DUMP_CLEANUP = f"rm -f {DUMP} /tmp/keepalived_parent.data"
# What KeepalivedState prints of the dump: each `VRRP Instance = <name>` line as INSTANCE<name>,
# each `State = <state>` line as STATE<state>. The dump has a `State =` line per interface and
# script too: an instance's state is the line right after its name (the one rule that
# instance_states() reads in Python and ready_check() in shell).
INSTANCE = "__instance="
STATE = "__vrrp="
READ_DUMP = f"sed -n -e 's/^ *VRRP Instance = /{INSTANCE}/p' -e 's/^ *State = /{STATE}/p'"
# The states in which an instance may take its VIP (FAULT: check_alive failing, or maintenance).
TAKES_VIP = ("BACKUP", "MASTER")


def instance_states(lines) -> dict[str, str | None]:
    """{instance: its state} of KeepalivedState's output: the line right after an INSTANCE
    line, when that is a STATE line with a state (else None)."""
    lines = [x.strip() for x in lines]
    out = {}
    for line, after in zip(lines, lines[1:] + [""]):
        if line.startswith(INSTANCE):
            out[line[len(INSTANCE):]] = (after[len(STATE):] or None) if after.startswith(STATE) else None
    return out


def ready_check(states: str | None = None) -> str:
    """Shell that succeeds when the output of `states` (by default KeepalivedState's own
    command; anything that prints as it does) names a VRRP instance and every instance's state
    (the line right after its name) is one of TAKES_VIP: this controller may take the VIP."""
    states = states or KeepalivedState().command()
    ready = "|".join(TAKES_VIP)
    return (f"v=$({states} | awk '/^{INSTANCE}/{{getline; print}}'); "
            f"test -n \"$v\" && ! echo \"$v\" | grep -qvxE '{STATE}({ready})'")


class KeepalivedState(FactBase):
    """keepalived's unit state, and its VRRP state as keepalived itself reports it: SIGUSR1
    makes it dump its state to /tmp/keepalived.data (its documented diagnostic; nothing else
    changes; the dump is removed once read), whose `VRRP Instance = ` and `State = ` lines are
    read: `vrrp_state` is the first instance's (the internal VIP's), `vrrp_states` every instance's (with an external VIP, two).

    .. code:: python

        {"active": "active", "vrrp_state": "BACKUP",
         "vrrp_states": {"internal_vip_77": "BACKUP", "external_vip_78": "BACKUP"}, "error": None}
    """

    @staticmethod
    def default():
        return {"active": None, "vrrp_state": None, "vrrp_states": {}, "error": NO_OUTPUT}

    def command(self, pid_file: str = "/run/keepalived.pid"):
        pid = shlex.quote(pid_file)
        return probe(
            "systemctl",
            "a=$(systemctl is-active keepalived); echo \"$a\"; "
            f"if [ \"$a\" = active ] && test -s {pid}; then "
            # the shell's own read and list (cat and seq were two processes at every run)
            f"trap {shlex.quote(DUMP_CLEANUP)} EXIT; {DUMP_CLEANUP}; read -r p < {pid}; kill -USR1 \"$p\"; "
            f"for i in {' '.join(map(str, range(1, 31)))}; do grep -q '^ *State = ' {DUMP} 2>/dev/null && break; sleep 0.1; done; "
            f"{READ_DUMP} {DUMP} 2>/dev/null; "
            f"{DUMP_CLEANUP}; fi; true",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"active": None, "vrrp_state": None, "vrrp_states": {},
                  "error": failure(body, rc, missing, "systemctl is-active keepalived")}
        if result["error"]:
            return result
        for line in (x.strip() for x in body):
            if line.startswith(STATE):
                # the first: the internal VIP's instance (also in an output that names no instance)
                if result["vrrp_state"] is None:
                    result["vrrp_state"] = line[len(STATE):] or None
            elif line and not line.startswith(INSTANCE) and result["active"] is None:
                result["active"] = line
        result["vrrp_states"] = {i: st for i, st in instance_states(body).items() if st}
        if result["active"] is None:
            result["error"] = "systemctl is-active keepalived printed nothing"
        elif result["active"] == "active" and result["vrrp_state"] is None:
            result["error"] = "keepalived did not dump its state on SIGUSR1 within 3 s (/tmp/keepalived.data)"
        return result
