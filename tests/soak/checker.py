"""The soak's checker: a history (history.py) in, anomalies and availability out. Pure: no
lab, no clock, no dependency; `python -m tests.soak check HISTORY.jsonl` runs it on a saved run.

What it finds:
  list-append (MariaDB, after Jepsen's Elle): every ok read of a key must be a prefix of the
    longest one (its version order), else `incompatible-order`; `duplicate-elements` (an
    element twice in one read); `unexpected-element` (one no transaction appended);
    `lost-append` (an acknowledged append absent from the version order although a read of
    its key began after the acknowledgement); `stale-read` (present, but missing from a read
    that began after its acknowledgement); `G1a` (a read shows an element of a failed
    transaction); `G1b` (a read ends on an element its transaction appended before another
    one to the same key; that read gets no rw edge, so it is not a cycle too); and dependency
    cycles between committed (ok, or info and observed) transactions: ww edges from
    consecutive elements of the version order, wr from a read's last element to the reader,
    rw (anti-dependency) from a reader to the writer of the element after what it read. Each
    strongly connected component of that graph is reported once, as its most severe cycle:
    `G0` (ww only), `G1c` (ww and wr), `G-single` (exactly one rw), `G2` (two rw or more),
    with one cycle as the example.
  bank: every ok read of all accounts sums to the total of the accounts in the meta record,
    and names every account (`bank-total`).
  queue: `lost-message` (a confirmed publish never delivered, when an ok drain, the consumer
    seeing the queue empty, completed after its confirmation), `duplicate-message` (a second
    delivery the broker did not mark redelivered; marked ones are at-least-once redelivery,
    counted but allowed), `unexpected-message` (delivered, never published or its publish
    failed for certain).
  availability: per category (writes: ok transactions with an append and ok transfers;
    messages: confirmed publishes; api: ok keystone calls) the gaps between consecutive
    acknowledgements (the run's start and end count as boundaries); per fault occurrence the
    longest gap that overlaps its window [start, end] (so a slow recovery after the fault
    ends counts); per fault kind the p50 and max of those.

Outcomes as Jepsen's: an info (unknown) operation may have happened or not; its appends are
never "lost", and an element of it that is read is not an anomaly (the transaction joins the
graph). An operation with no completion (the run stopped) is info.

Limits (what it cannot see):
  - No real-time or process-order edges: cycles are of ww/wr/rw only (serializability, not
    strict serializability); stale reads are found only per key, through the prefix rule.
  - The version order is the longest read: appends never read cannot be ordered, and a lost
    append is seen only if its key is read after it (the workload reads every key at the end).
  - A read inside a transaction is taken as one point; internal consistency of a transaction
    (its reads of its own appends) is not checked, nor are reads that are not prefixes placed
    in the graph beyond their wr edge.
  - Per component only the most severe cycle is reported; several anomalies in one component
    count once. In a component with more than SINGLE_SEARCH rw edges a G-single cycle through
    the edges not tried shows as G2 (a component that large is a broken run either way).
  - Bank: only the total (negative balances are allowed); transfers are not replayed.
  - Queue: order is not checked (a quorum queue with several consumers does not keep it);
    lost messages need the final drain; an ack the broker never received shows as a
    redelivery, not a loss.
  - Availability is from the clients' view: a gap is "no acknowledgement", whether the
    service refused, hung or the client was slow.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tests.bench.timeline import percentile

LOST = ("lost-append", "lost-message")
KINDS = ("lost-append", "lost-message", "stale-read", "duplicate-elements", "incompatible-order", "unexpected-element",
         "G1a", "G1b", "G0", "G1c", "G-single", "G2", "bank-total", "duplicate-message", "unexpected-message")
CATEGORIES = ("writes", "messages", "api")


class Operation(NamedTuple):
    id: int
    process: str
    f: str
    outcome: str  # ok, fail, info
    invoked: Any  # the value at invocation
    value: Any  # the value at completion (the invocation's for fail and info)
    start: float  # mono
    end: float


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: str
    start: float  # mono: the span of the operations involved
    end: float


@dataclass(frozen=True)
class Fault:
    id: int
    kind: str
    start: float
    end: float


@dataclass
class Report:
    anomalies: list[Anomaly]
    faults: list[Fault]
    minutes: float
    acknowledged: dict[str, int]  # category: count
    gaps: dict[str, dict[str, list[float]]]  # fault kind: category: the gap of each occurrence
    longest: dict[str, float]  # category: the run's longest gap
    redelivered: int = 0
    unchecked_messages: int = 0  # confirmed, but no drain after them
    notes: list[str] = field(default_factory=list)

    def kinds(self) -> Counter:
        return Counter(a.kind for a in self.anomalies)

    @property
    def lost(self) -> int:
        return sum(1 for a in self.anomalies if a.kind in LOST)

    @property
    def other(self) -> int:
        return len(self.anomalies) - self.lost

    def anomalies_in(self, kind: str | None) -> int:
        """Anomalies overlapping a window of fault `kind` (None: overlapping no fault)."""
        def overlaps(a: Anomaly, f: Fault) -> bool:
            return a.start <= f.end and a.end >= f.start
        if kind is None:
            return sum(1 for a in self.anomalies if not any(overlaps(a, f) for f in self.faults))
        return sum(1 for a in self.anomalies if any(overlaps(a, f) for f in self.faults if f.kind == kind))

    def table(self) -> str:
        cats = [c for c in CATEGORIES if self.acknowledged.get(c) or c in self.longest]
        head = ["fault", "count"] + [f"{c} gap p50/max s" for c in cats] + ["anomalies"]
        rows = []
        for kind in sorted(self.gaps):
            cells = [kind, str(sum(1 for f in self.faults if f.kind == kind))]
            for c in cats:
                g = self.gaps[kind].get(c, [])
                cells.append(f"{percentile(g, 50):.1f} / {max(g):.1f}" if g else "-")
            rows.append(cells + [str(self.anomalies_in(kind))])
        rows.append(["(no fault)", "-"] + ["" for _ in cats] + [str(self.anomalies_in(None))])
        rows.append(["(whole run)", str(len(self.faults))] + [f"- / {self.longest[c]:.1f}" if c in self.longest else "-" for c in cats]
                    + [str(len(self.anomalies))])
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head] + rows]
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"soak: {self.minutes:.1f} min, {len(self.faults)} faults, {self.acknowledged.get('writes', 0)} writes, "
                f"{self.acknowledged.get('messages', 0)} messages acknowledged, {self.lost} lost, {self.other} anomalies")

    def text(self) -> str:
        out = [self.table(), ""]
        for kind, n in sorted(self.kinds().items()):
            out.append(f"{kind}: {n}")
            out += [f"  {a.detail}" for a in self.anomalies if a.kind == kind][:5]
        if self.redelivered:
            out.append(f"redelivered (at-least-once, allowed): {self.redelivered}")
        if self.unchecked_messages:
            out.append(f"confirmed messages not checked (no drain after them): {self.unchecked_messages}")
        out += self.notes
        return "\n".join(out + [self.summary()])


# --- pairing ------------------------------------------------------------------------------


def operations(records: list[dict]) -> tuple[list[Operation], float, float]:
    """The history's operations (invocation paired with completion) and its first and last
    mono; an operation with no completion is info until the end."""
    timed = [r for r in records if r["type"] != "meta"]
    if not timed:
        return [], 0.0, 0.0
    t0, t1 = min(r["mono"] for r in timed), max(r["mono"] for r in timed)
    invoked, done = {}, {}
    for r in timed:
        if r["type"] == "invoke":
            if r["id"] in invoked:
                raise ValueError(f"operation {r['id']} invoked twice")
            invoked[r["id"]] = r
        elif r["type"] != "fault":
            if r["id"] not in invoked or r["id"] in done:
                raise ValueError(f"operation {r['id']}: a {r['type']} with no invocation before it, or a second completion")
            done[r["id"]] = r
    ops = []
    for i, r in invoked.items():
        c = done.get(i, {"type": "info", "value": r["value"], "mono": t1})
        ops.append(Operation(i, r["process"], r["f"], c["type"], r["value"], c["value"], r["mono"], c["mono"]))
    return ops, t0, t1


def faults(records: list[dict], t1: float) -> list[Fault]:
    starts, ends = {}, {}
    for r in records:
        if r["type"] == "fault":
            (starts if r["phase"] == "start" else ends)[r["fault"]] = r
    return [Fault(i, r["kind"], r["mono"], ends[i]["mono"] if i in ends else t1) for i, r in sorted(starts.items())]


# --- list-append ------------------------------------------------------------------------


def _span(*ops: Operation) -> tuple[float, float]:
    return min(o.start for o in ops), max(o.end for o in ops)


def list_append(ops: list[Operation]) -> list[Anomaly]:
    txns = [o for o in ops if o.f == "txn"]
    writer: dict[tuple, Operation] = {}  # (key, element): the transaction that appended it
    appends: dict[tuple, list] = defaultdict(list)  # (txn id, key): its elements in order
    for o in txns:
        for f, k, v in o.invoked:
            if f == "append":
                writer[(k, v)] = o
                appends[(o.id, k)].append(v)
    reads = [(o, k, v) for o in txns if o.outcome == "ok" for f, k, v in o.value if f == "r" and v is not None]
    out: list[Anomaly] = []
    order: dict[Any, list] = {}
    for o, k, v in reads:
        if len(v) >= len(order.get(k, ())):
            order[k] = v
    bad_order = set()
    for o, k, v in reads:
        twice = sorted((e for e, n in Counter(v).items() if n > 1), key=str)
        if twice:
            out.append(Anomaly("duplicate-elements", f"op {o.id} read key {k} with {twice} twice: {v}", o.start, o.end))
        if v != order[k][:len(v)] and k not in bad_order:
            bad_order.add(k)
            out.append(Anomaly("incompatible-order", f"key {k}: op {o.id} read {v}, not a prefix of {order[k]}", o.start, o.end))
        for e in v:
            w = writer.get((k, e))
            if w is None:
                out.append(Anomaly("unexpected-element", f"op {o.id} read {e} in key {k}: no transaction appended it", o.start, o.end))
            elif w.outcome == "fail":
                out.append(Anomaly("G1a", f"op {o.id} read {e} of key {k}, appended by op {w.id} which failed", *_span(o, w)))
        if v:
            w = writer.get((k, v[-1]))
            if w is not None and w is not o and w.outcome != "fail" and appends[(w.id, k)][-1] != v[-1]:
                out.append(Anomaly("G1b", f"op {o.id} read key {k} ending at {v[-1]}, an intermediate append of op {w.id} "
                                          f"(its last: {appends[(w.id, k)][-1]})", *_span(o, w)))
    out += _lost_and_stale(txns, reads, order)
    out += _cycles(txns, reads, order, writer)
    return out


def _lost_and_stale(txns, reads, order) -> list[Anomaly]:
    """For each acknowledged append: a read of its key that began after the acknowledgement
    and is too short to contain it (reads are prefixes of the order)."""
    by_key = defaultdict(list)
    for o, k, v in reads:
        by_key[k].append((o.start, len(v), o))
    shortest_after = {}  # key: (starts sorted, suffix minimum of (length, read))
    for k, rows in by_key.items():
        rows.sort(key=lambda r: r[0])
        suffix, best = [], None
        for start, n, o in reversed(rows):
            best = (n, o) if best is None or n < best[0] else best
            suffix.append(best)
        shortest_after[k] = ([r[0] for r in rows], suffix[::-1])
    out, positions = [], {}
    for a in txns:
        if a.outcome != "ok":
            continue
        for f, k, e in a.invoked:
            if f != "append" or k not in shortest_after:
                continue
            starts, suffix = shortest_after[k]
            i = bisect.bisect_right(starts, a.end)
            if i == len(starts):
                continue  # no read of the key after the acknowledgement: cannot tell
            n, r = suffix[i]
            position = positions.setdefault(k, {x: i for i, x in enumerate(order[k])}).get(e)
            if position is None:
                out.append(Anomaly("lost-append", f"op {a.id} appended {e} to key {k} (acknowledged), "
                                                  f"no read has it; op {r.id} read the key after", *_span(a, r)))
            elif n <= position:
                out.append(Anomaly("stale-read", f"op {r.id} read key {k} without {e}, acknowledged by op {a.id} "
                                                 "before that read began", *_span(a, r)))
    return out


def _cycles(txns, reads, order, writer) -> list[Anomaly]:
    graph: dict[int, dict[int, set]] = defaultdict(lambda: defaultdict(set))
    byid = {o.id: o for o in txns}

    def edge(a: Operation | None, b: Operation | None, kind: str) -> None:
        if a is not None and b is not None and a is not b and "fail" not in (a.outcome, b.outcome):
            graph[a.id][b.id].add(kind)

    for k, elements in order.items():
        for e1, e2 in zip(elements, elements[1:]):
            edge(writer.get((k, e1)), writer.get((k, e2)), "ww")
    for o, k, v in reads:
        if v:
            edge(writer.get((k, v[-1])), o, "wr")
        if len(v) < len(order[k]) and v == order[k][:len(v)]:
            after = writer.get((k, order[k][len(v)]))
            if not v or after is not writer.get((k, v[-1])):  # inside one transaction's appends: G1b, not a cycle
                edge(o, after, "rw")
    out = []
    for component in _components(graph, set(graph) | {b for a in graph for b in graph[a]}):
        if len(component) < 2:
            continue
        kind, cycle = _classify(graph, component)
        text = " ".join(f"op {a} -{'/'.join(sorted(graph[a][b]))}->" for a, b in zip(cycle, cycle[1:] + cycle[:1])) + f" op {cycle[0]}"
        out.append(Anomaly(kind, f"{text} (a component of {len(component)} transactions)", *_span(*(byid[i] for i in cycle))))
    return out


def _components(graph, nodes, allowed=("ww", "wr", "rw")) -> list[list[int]]:
    """Strongly connected components (Tarjan, iterative) of `graph` restricted to `nodes` and
    to edges of the `allowed` kinds."""
    def succ(a):
        return [b for b, kinds in graph.get(a, {}).items() if b in nodes and kinds & set(allowed)]
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(succ(root)))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]; counter[0] += 1
                    stack.append(nxt); on.add(nxt)
                    work.append((nxt, iter(succ(nxt))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    x = stack.pop(); on.discard(x); comp.append(x)
                    if x == node:
                        break
                out.append(sorted(comp))
    return out


def _path(graph, nodes, src, dst, allowed) -> list[int] | None:
    """The shortest path src .. dst (breadth first) over `allowed` edges inside `nodes`."""
    parent, frontier = {src: None}, [src]
    while frontier:
        nxt = []
        for a in frontier:
            for b, kinds in graph.get(a, {}).items():
                if b in nodes and b not in parent and kinds & set(allowed):
                    parent[b] = a
                    if b == dst:
                        path = [b]
                        while parent[path[-1]] is not None:
                            path.append(parent[path[-1]])
                        return path[::-1]
                    nxt.append(b)
        frontier = nxt
    return None


def _cycle_of(graph, nodes, allowed) -> list[int] | None:
    for comp in _components(graph, nodes, allowed):
        if len(comp) > 1:
            first = comp[0]
            for b, kinds in graph[first].items():
                if b in comp and kinds & set(allowed):
                    back = _path(graph, set(comp), b, first, allowed)
                    if back:
                        return [first] + back[:-1]
    return None


SINGLE_SEARCH = 2000  # rw edges tried for a G-single cycle in one component (each a search)


def _classify(graph, component) -> tuple[str, list[int]]:
    nodes = set(component)
    for kind, allowed in (("G0", ("ww",)), ("G1c", ("ww", "wr"))):
        cycle = _cycle_of(graph, nodes, allowed)
        if cycle:
            return kind, cycle
    rw = [(a, b) for a in component for b, kinds in graph[a].items() if b in nodes and "rw" in kinds]
    for a, b in rw[:SINGLE_SEARCH]:
        back = _path(graph, nodes, b, a, ("ww", "wr"))
        if back:
            return "G-single", [a] + back[:-1]
    return "G2", _cycle_of(graph, nodes, ("ww", "wr", "rw"))


# --- bank and queue ------------------------------------------------------------------------


def bank(ops: list[Operation], meta: dict) -> list[Anomaly]:
    reads = [o for o in ops if o.f == "read" and o.outcome == "ok"]
    if not reads:
        return []
    if "accounts" not in meta:
        raise ValueError("the history has bank reads but its meta record has no 'accounts' {account: initial balance}")
    accounts = {str(a): b for a, b in meta["accounts"].items()}
    total = sum(accounts.values())
    out = []
    for o in reads:
        seen = {str(a): b for a, b in o.value.items()}
        if set(seen) != set(accounts) or sum(seen.values()) != total:
            out.append(Anomaly("bank-total", f"op {o.id} read {seen}: sum {sum(seen.values())}, "
                                             f"expected {total} over {sorted(accounts)}", o.start, o.end))
    return out


def queue(ops: list[Operation]) -> tuple[list[Anomaly], int, int]:
    """Anomalies, at-least-once redeliveries, confirmed messages left unchecked."""
    published = {o.invoked: o for o in ops if o.f == "publish"}
    deliveries = defaultdict(list)
    for o in sorted((o for o in ops if o.f == "consume" and o.outcome == "ok"), key=lambda o: o.end):
        deliveries[o.value["msg"]].append(o)
    drains = [o.end for o in ops if o.f == "drain" and o.outcome == "ok"]
    out, redelivered, unchecked = [], 0, 0
    for msg, got in deliveries.items():
        p = published.get(msg)
        if p is None or p.outcome == "fail":
            why = "never published" if p is None else f"its publish (op {p.id}) failed"
            out.append(Anomaly("unexpected-message", f"message {msg} delivered (op {got[0].id}), {why}", got[0].start, got[0].end))
        for again in got[1:]:
            if again.value.get("redelivered"):
                redelivered += 1
            else:
                out.append(Anomaly("duplicate-message", f"message {msg} delivered again (op {again.id}, after op {got[0].id}) "
                                                        "not marked redelivered", *_span(got[0], again)))
    for msg, p in published.items():
        if p.outcome != "ok" or msg in deliveries:
            continue
        if any(d > p.end for d in drains):
            out.append(Anomaly("lost-message", f"message {msg} confirmed (op {p.id}), never delivered before the drain", p.start, p.end))
        else:
            unchecked += 1
    return out, redelivered, unchecked


# --- availability and the whole -----------------------------------------------------------


def category(o: Operation) -> str | None:
    """The availability category of an operation: what an acknowledgement of it proves."""
    if o.f == "txn":
        return "writes" if any(f == "append" for f, _, _ in o.invoked) else None
    return {"transfer": "writes", "publish": "messages", "api": "api"}.get(o.f)


def check(records: list[dict]) -> Report:
    meta = next((r for r in records if r["type"] == "meta"), {})
    ops, t0, t1 = operations(records)
    fault_list = faults(records, t1)
    anomalies = list_append(ops) + bank(ops, meta)
    queued, redelivered, unchecked = queue(ops)
    anomalies += queued
    used = {category(o) for o in ops} - {None}
    acked = {c: sorted(o.end for o in ops if o.outcome == "ok" and category(o) == c) for c in used}
    gaps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    longest = {}
    for c, times in acked.items():
        bounds = [t0] + times + [t1]
        starts, ends = bounds[:-1], bounds[1:]
        longest[c] = max(b - a for a, b in zip(starts, ends))
        for f in fault_list:
            lo, hi = bisect.bisect_right(ends, f.start), bisect.bisect_left(starts, f.end)
            overlapping = [ends[i] - starts[i] for i in range(lo, max(lo, hi))]
            gaps[f.kind][c].append(max(overlapping, default=0.0))
    for f in fault_list:
        gaps[f.kind]  # a kind with no category still gets its row
    anomalies.sort(key=lambda a: (a.start, a.kind))
    return Report(anomalies, fault_list, (t1 - t0) / 60, {c: len(t) for c, t in acked.items()},
                  {k: dict(v) for k, v in gaps.items()}, longest, redelivered, unchecked)
