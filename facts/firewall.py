"""The host firewall: the project's nftables table as loaded in the kernel (config/firewall.py)."""

from __future__ import annotations

from pyinfra.api import FactBase

from config.firewall import TABLE
from facts.probe import NO_OUTPUT, failure, find_json_object, probe, split_probe

ABSENT = "__absent"


class FirewallState(FactBase):
    """Whether the project's table is loaded on this node, and the addresses its `controllers`
    set admits to the cluster ports (what the node's kernel enforces, not what a file says):

    .. code:: python

        {"loaded": True, "controllers": ["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.100"],
         "error": None}
    """

    @staticmethod
    def default():
        return {"loaded": None, "controllers": [], "error": NO_OUTPUT}

    def command(self):
        return probe(
            "nft",
            f"timeout 5 nft list tables >/tmp/.openstack-ha-tables || exit $?; "
            f"if grep -qx 'table inet {TABLE}' /tmp/.openstack-ha-tables; "
            f"then timeout 5 nft -j list set inet {TABLE} controllers; else echo {ABSENT}; fi",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"loaded": None, "controllers": [], "error": None}
        if missing:  # no nft: nothing can be loaded
            return {**result, "loaded": False}
        result["error"] = failure(body, rc, missing, "nft list")
        if result["error"]:
            return result
        if any(line.strip() == ABSENT for line in body):
            return {**result, "loaded": False}
        data, problem = find_json_object(body, "nftables", "nft -j list set")
        if problem:
            return {**result, "error": problem}
        sets = [x["set"] for x in data["nftables"] if isinstance(x, dict) and isinstance(x.get("set"), dict)]
        if not sets:
            return {**result, "error": f"nft -j list set: no set 'controllers' in table inet {TABLE}"}
        elements = sets[0].get("elem") or []
        result.update(loaded=True, controllers=sorted(e for e in elements if isinstance(e, str)))
        return result
