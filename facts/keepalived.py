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
            f"trap {shlex.quote(DUMP_CLEANUP)} EXIT; {DUMP_CLEANUP}; kill -USR1 $(cat {pid}); "
            f"for i in $(seq 30); do grep -q '^ *State = ' {DUMP} 2>/dev/null && break; sleep 0.1; done; "
            f"sed -n -e 's/^ *VRRP Instance = /__instance=/p' -e 's/^ *State = /__vrrp=/p' {DUMP} 2>/dev/null; "
            f"{DUMP_CLEANUP}; fi; true",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"active": None, "vrrp_state": None, "vrrp_states": {},
                  "error": failure(body, rc, missing, "systemctl is-active keepalived")}
        if result["error"]:
            return result
        instance = None
        for line in (x.strip() for x in body):
            if line.startswith("__instance="):
                instance = line[len("__instance="):]
            elif line.startswith("__vrrp="):
                state = line[len("__vrrp="):] or None
                if result["vrrp_state"] is None:
                    result["vrrp_state"] = state
                if instance and state:
                    result["vrrp_states"][instance] = state
                instance = None
            elif line and result["active"] is None:
                result["active"] = line
        if result["active"] is None:
            result["error"] = "systemctl is-active keepalived printed nothing"
        elif result["active"] == "active" and result["vrrp_state"] is None:
            result["error"] = "keepalived did not dump its state on SIGUSR1 within 3 s (/tmp/keepalived.data)"
        return result
