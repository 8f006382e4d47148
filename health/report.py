"""The health report: rows (Check), the report they make (Report), its text and its JSON.

A Check is one row: a name, a status (OK, FAIL, WARN or INFO), a detail for the operator and, for
a cluster-wide row, the hosts a failure is blamed on. A Report holds one list of rows per
controller and one for the cluster; it renders as plain-text tables and as the JSON that
$HA_VERIFY_JSON receives (monitoring, tests/lab and lab/drills.py read its keys: `ok`,
`generated_at`, `controllers`, `vip_holders` (and `external_vip_holders` with an external
VIP), `failures`, `warnings`, `hosts`, `cluster`, `facts`). A WARN row does not fail the
report: it is a failure to come (a certificate near its expiry), listed in `warnings`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

OK, FAIL, WARN, INFO = "ok", "FAIL", "WARN", "info"


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: str  # OK, FAIL, WARN or INFO
    detail: str
    # Cluster-wide checks: the hosts a failure is blamed on (they fail the run).
    hosts: tuple[str, ...] = ()


@dataclass
class Report:
    """Every controller's rows, the cluster's rows, and who holds the VIP."""

    controllers: list[str]
    hosts: dict[str, list[Check]] = field(default_factory=dict)
    cluster: list[Check] = field(default_factory=list)
    vip_holders: list[str] = field(default_factory=list)
    generated_at: str = ""
    # With an external VIP: who holds it (None: the site has none; the JSON then omits it).
    external_vip_holders: list[str] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        """Every failed check as one line: `host: check: detail` or `cluster: ...`."""
        lines = [f"{h}: {c.name}: {c.detail}" for h, checks in self.hosts.items() for c in checks if c.status == FAIL]
        lines += [f"cluster: {c.name}: {c.detail}" for c in self.cluster if c.status == FAIL]
        return lines

    def warnings(self) -> list[str]:
        """Every WARN row as one line: `host: check: detail`."""
        return [f"{h}: {c.name}: {c.detail}" for h, checks in self.hosts.items() for c in checks if c.status == WARN]

    def host_failures(self, name: str, cluster: bool = True) -> list[str]:
        """Why this host fails: its own failed checks, and failed cluster checks naming it."""
        own = [c for c in self.hosts.get(name, []) if c.status == FAIL]
        lines = [f"{c.name}: {c.detail}" for c in own]
        if cluster:
            # A cluster check the host's own row of the same name already explains is not repeated.
            said = {c.name for c in own}
            lines += [
                f"cluster {c.name}: {c.detail}"
                for c in self.cluster
                if c.status == FAIL and name in c.hosts and c.name not in said
            ]
        return lines

    def to_dict(self, facts: dict | None = None) -> dict:
        """The JSON report; `facts` (each host's raw fact results) under "facts" when given."""
        out = {
            "ok": self.ok,
            "generated_at": self.generated_at,
            "controllers": self.controllers,
            "vip_holders": self.vip_holders,
            **({"external_vip_holders": self.external_vip_holders} if self.external_vip_holders is not None else {}),
            "failures": self.failures(),
            "warnings": self.warnings(),
            "hosts": {h: [check_dict(c) for c in checks] for h, checks in self.hosts.items()},
            "cluster": [check_dict(c) for c in self.cluster],
        }
        if facts is not None:
            out["facts"] = facts
        return out

    def render(self) -> str:
        """Plain-text tables: one per controller, then the cluster-wide checks."""
        rows = [c for checks in self.hosts.values() for c in checks] + self.cluster
        width = max([len(c.name) for c in rows] + [5])
        out = []

        def table(title, checks):
            out.append(title)
            out.append(f"  {'CHECK':<{width}}  {'STATUS':<6}  DETAIL")
            for c in checks:
                out.append(f"  {c.name:<{width}}  {c.status:<6}  {c.detail}")
            out.append("")

        for name, checks in self.hosts.items():
            external = name in (self.external_vip_holders or ())
            table(name + (" (VIP holder)" if name in self.vip_holders else "")
                  + (" (external VIP holder)" if external else ""), checks)
        table("cluster", self.cluster)
        failures, warnings = self.failures(), self.warnings()
        warned = f" ({len(warnings)} warning{'s' * (len(warnings) > 1)})" if warnings else ""
        out.append(
            f"health: OK{warned}" if not failures else f"health: FAILED ({len(failures)} failed check{'s' * (len(failures) > 1)})"
        )
        return "\n".join(out)


def check_dict(c: Check) -> dict:
    """One row as JSON: {name, status, detail, hosts (a list)}."""
    d = asdict(c)
    d["hosts"] = list(c.hosts)
    return d


def write_json(report: Report, facts: dict, path: str) -> None:
    """Write the JSON report atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(report.to_dict(facts), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def problem(facts: dict, key: str) -> str | None:
    """Why fact `key` of one host's facts cannot be judged, None when it can: the fact's own
    error, or that it was not collected at all (a missing fact is a failure, never a skip)."""
    fact = facts.get(key)
    if not isinstance(fact, dict):
        return f"fact '{key}' not collected"
    return fact.get("error")
