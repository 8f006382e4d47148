"""The host firewall: the project's nftables table as loaded in the kernel (config/firewall.py)."""

from __future__ import annotations

from pyinfra.api import FactBase

from config.firewall import TABLE
from facts.probe import NO_OUTPUT, failure, find_json_object, probe, split_probe

ABSENT = "__absent"


class FirewallState(FactBase):
    """Whether the project's table is loaded on this node, the addresses its `controllers`
    set admits to the cluster ports and how many rules its chain `input` holds (what the
    node's kernel enforces, not what a file says; `nft flush table` keeps the sets):

    .. code:: python

        {"loaded": True, "controllers": ["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.100"],
         "rules": 9, "error": None}
    """

    @staticmethod
    def default():
        return {"loaded": None, "controllers": [], "rules": None, "error": NO_OUTPUT}

    def command(self):
        # One nft (it was two, each under a timeout, and a grep): a table that is not there is
        # its ENOENT, read in the C locale. nft asks the node's own kernel (netlink): nothing to
        # wait for on another host, the bundle's limit bounds it.
        return probe(
            "nft",
            f"out=$(LC_ALL=C nft -j list table inet {TABLE} 2>&1) && {{ printf '%s\\n' \"$out\"; exit 0; }}; rc=$?; "
            f"case $out in *'No such file or directory'*) echo {ABSENT};; *) printf '%s\\n' \"$out\"; exit $rc;; esac",
        )

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"loaded": None, "controllers": [], "rules": None, "error": None}
        if missing:  # no nft: nothing can be loaded
            return {**result, "loaded": False}
        result["error"] = failure(body, rc, missing, "nft list")
        if result["error"]:
            return result
        if any(line.strip() == ABSENT for line in body):
            return {**result, "loaded": False}
        data, problem = find_json_object(body, "nftables", "nft -j list table")
        if problem:
            return {**result, "error": problem}
        objects = [x for x in data["nftables"] if isinstance(x, dict)]
        sets = [x["set"] for x in objects if isinstance(x.get("set"), dict) and x["set"].get("name") == "controllers"]
        if not sets:
            return {**result, "error": f"nft -j list table: no set 'controllers' in table inet {TABLE}"}
        elements = sets[0].get("elem") or []
        rules = [x for x in objects if isinstance(x.get("rule"), dict) and x["rule"].get("chain") == "input"]
        result.update(loaded=True, controllers=sorted(e for e in elements if isinstance(e, str)), rules=len(rules))
        return result
