"""RabbitMQ's partition rules, written once: which side of a partition that outlived the
network's heal is the minority. Pure (no pyinfra, no I/O): used by the health model
(health/checks.py) and the deploy's plan (operations/rabbitmq_plan.py), both from every
controller's RabbitmqMembers fact (facts/rabbitmq.py: GET /api/nodes)."""

from __future__ import annotations


def short(node: str) -> str:
    """`rabbit@node02` -> `node02`."""
    return node.strip().rpartition("@")[2]


def healed_minority(members: dict[str, dict], up: list[str]) -> list[str]:
    """The minority side of a partition still recorded once the network healed (found by CI's
    soak: node02 cut off, then `rabbit@node02: rabbit@node01, rabbit@node03; rabbit@node03:
    rabbit@node02` on every node, every broker seeing every other running). The records name
    the sides: the minority is the nodes that each recorded exactly the others, a majority of
    the controllers `up`. Every node of `members` ({controller: its RabbitmqMembers}) must
    report the same records (each reads the whole cluster's), and the others' records may
    name only the minority; otherwise, or with no such minority, none (sorted)."""
    records = {tuple(sorted((m or {}).get("partitions") or [])) for m in members.values()}
    if len(records) != 1:
        return []
    seen: dict[str, set[str]] = {}
    for line in next(iter(records)):
        node, _, others = line.partition(": ")
        seen[short(node)] = {short(o) for o in others.split(",") if o.strip()}
    minority = {n for n, others in seen.items() if n in up and len(others & set(up)) * 2 > len(up)}
    rest = set(up) - minority
    if any(seen[n] != rest for n in minority) or any(not others <= minority for n, others in seen.items() if n in rest):
        return []
    return sorted(minority)


def minority(members: dict[str, dict | None], up: list[str]) -> list[str]:
    """The side to restart of a partition that outlived the network's heal, from the whole
    picture only: every controller of `up` answered ({controller: its RabbitmqMembers}, none
    an error), a partition is recorded, and either the running views split into one majority
    side that sees exactly itself (the rest is named: seen on the lab after a 20 s cut of
    node02, node02 seeing itself, node01 and node03 each other, each side recording the
    other), or every view is whole and the records name the minority (healed_minority()).
    Otherwise none (sorted): a partial picture, or no majority, names nobody."""
    if set(members) != set(up) or any(not m or m.get("error") for m in members.values()):
        return []
    if not any(m.get("partitions") for m in members.values()):
        return []
    views = {n: frozenset(short(r) for r in m.get("running_nodes") or []) for n, m in members.items()}
    sides = {view for n, view in views.items() if n in view}
    majority = [side for side in sides if len(side) * 2 > len(up) and all(views.get(m) == side for m in side)]
    if len(majority) != 1:
        return []
    (side,) = majority
    if side >= set(up):
        return healed_minority(members, up)
    return sorted(set(up) - side)
