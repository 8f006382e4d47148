"""The documentation's figure tables, from the records the benches wrote and the repository keeps.

The figure tables live in docs/failover.md (failover, stale connections, durability) and
docs/design.md (the no-op deploy, the first deploy's figures); PAGES are every page read, the
README and the docs/ pages that came from it, so a figure table without a record is caught in
any of them. Every measured figure there comes from a record under docs/ (tests/bench/records.py):
the failover and stale-connection tables from docs/bench-failover/records.json (each run's
configuration in its figures["config"], or, for the runs recorded before the bench kept it,
in docs/bench-failover/configs.json, recovered from git); the no-op table and the first-deploy
figures from docs/bench-deploy/records.json; the durability table from
docs/bench-durability/records.json. Rows are told apart by the configuration they ran under:
a profile whose runs differ in a setting names it in its rows ("deployed
(mariadb_connect_timeout 500ms)").

    python -m tests.bench.figures            # the tables as the records give them
    python -m tests.bench.figures --write    # the pages' tables rewritten from the records

tests/unit/test_figures.py compares the pages with these. No lab here: pure, and
imported by the unit tier.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.bench import records
from tests.bench.timeline import longest_ack_gap

ROOT = records.ROOT
FAILOVER_DIR = records.DOCS / "bench-failover"
# The pages read, relative to ROOT: the README and the docs/ pages its sections moved to. The
# figure tables are in docs/failover.md and docs/design.md; a table may move to any of these.
PAGES = ("README.md", "docs/configuration.md", "docs/operations.md", "docs/security.md", "docs/design.md",
         "docs/failover.md", "docs/lab.md", "docs/monitoring.md")


def read_pages() -> dict[str, str]:
    """{page: text} of PAGES."""
    return {page: (ROOT / page).read_text() for page in PAGES}


# --- the pages' tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    start: int  # index of the header line
    end: int  # index after the last row


def cells(line: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in line.strip().strip("|").split("|"))


def tables(text: str) -> list[Table]:
    """Every markdown table of `text` (header, separator, rows), in order."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(Table(cells(lines[i]), tuple(cells(x) for x in lines[i + 2:j]), i, j))
            i = j
        else:
            i += 1
    return out


def markdown(header, rows) -> list[str]:
    def line(cs):
        return "|" + "|".join(f" {c} " if c else " " for c in cs) + "|"
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


# --- formatting ----------------------------------------------------------------------------


def num(x: float) -> str:
    """A figure with the precision it was recorded with, at most 2 decimals."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def seconds(x) -> str:
    return "-" if x is None else f"{x:.1f} s"


def span(values, unit: str, text=num) -> str:
    lo, hi = min(values), max(values)
    return f"{text(lo)}{unit}" if text(lo) == text(hi) else f"{text(lo)}-{text(hi)}{unit}"


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# --- the failover bench ---------------------------------------------------------------------


def failover_runs() -> list[dict]:
    """Every run of docs/bench-failover/records.json in the file's order (fault by fault):
    {slug, fault, profile, vip_moved, config, **figures}. A run without a configuration (in
    its figures or in configs.json) is an error: its row could not say what it ran under."""
    recs = json.loads((FAILOVER_DIR / "records.json").read_text())
    path = FAILOVER_DIR / "configs.json"
    recovered = {(r["fault"], r["profile"], r["at"]): r["config"]
                 for r in (json.loads(path.read_text())["runs"] if path.exists() else [])}
    out = []
    for slug, fault in recs.items():
        for run in fault["runs"]:
            fig = run.get("figures") or {}
            config = fig.get("config") or recovered.get((slug, run["profile"], fig.get("at")))
            if config is None:
                raise ValueError(f"docs/bench-failover/records.json: {slug} ({run['profile']}, {fig.get('at')}) has no "
                                 "configuration: re-run it (the bench records it) or add it to configs.json with its source")
            # the longest acked-write gap from the requests (runs recorded before it was a figure)
            gap = fig.get("db_ack_gap")
            if gap is None:
                gap = longest_ack_gap([(t, ok, lat) for t, kind, ok, lat in run["requests"] if kind == "db"])
            out.append({**fig, "db_ack_gap": gap, "slug": slug, "fault": fault["fault"], "profile": run["profile"],
                        "vip_moved": run["vip_moved"], "config": config})
    return out


def profile_labels(runs: list[dict]) -> dict[int, str]:
    """Each run's profile cell: the profile, and the settings in which its runs differ."""
    labels = {}
    for profile in {r["profile"] for r in runs}:
        mine = [(i, flat(r["config"])) for i, r in enumerate(runs) if r["profile"] == profile]
        keys = sorted({k for _, c in mine for k in c}, key=str)
        differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for _, c in mine}) > 1]
        for i, c in mine:
            labels[i] = profile + (f" ({', '.join(f'{k} {c.get(k)}' for k in differ)})" if differ else "")
    return labels


FAILOVER_HEADER = ("fault", "profile", "VIP moved", "API GETs failed", "API p50 / p99", "failed-write window",
                   "longest acked-write gap", "writes failed", "keystone calls failed, longest gap", "timeline")


def failover_rows(runs: list[dict], page: str = "docs/failover.md") -> list[tuple[str, ...]]:
    """The rows, each fault's timeline linked relative to the `page` (ROOT-relative) holding them."""
    base = Path(os.path.relpath(FAILOVER_DIR, (ROOT / page).parent)).as_posix()
    labels, rows, seen = profile_labels(runs), [], set()
    for i, r in enumerate(runs):
        first = r["slug"] not in seen
        seen.add(r["slug"])
        rows.append((r["fault"] if first else "", labels[i], seconds(r["vip_moved"]),
                     f"{r['http_failed']} of {r['http_total']}",
                     f"{r['api_p50'] * 1000:.0f} / {r['api_p99'] * 1000:.0f} ms", seconds(r["db_outage"]),
                     seconds(r["db_ack_gap"]), f"{r['db_failed']} of {r['db_total']}",
                     "-" if r.get("ks_total") is None else f"{r['ks_failed']} of {r['ks_total']}, {r['ks_gap']:.1f} s",
                     f"[{r['slug']}.svg]({base}/{r['slug']}.svg)" if first else ""))
    return rows


def stale_header(runs: list[dict]) -> tuple[str, ...]:
    n = {r["config"].get("stale_http_connections") for r in runs if r.get("stale")}
    return ("fault", "profile", f"keep-alive HTTP (worst of {'/'.join(map(str, sorted(n)))})", "DB session",
            "direct memcached")


def stale_cell(fig, cap: float, direct: bool = False) -> str:
    """noticed / served again, in seconds; "cap": still hanging when the bench stopped waiting;
    direct memcached: noticed only (a connection to the failed node is never served again)."""
    if fig is None:
        return "-"
    noticed, served = fig
    if noticed is None:
        return "unaffected"
    if noticed >= cap - 1:
        return "cap"
    return f"{noticed:.1f}" if direct or served is None else f"{noticed:.1f} / {served:.1f}"


def stale_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """The faults with stale clients (a planned fault has none: not in this table)."""
    labels, rows, seen = profile_labels(runs), [], set()
    for i, r in enumerate(runs):
        st = r.get("stale")
        if not st:
            continue
        cap = r["config"]["stale_cap_s"]
        rows.append((r["fault"] if r["slug"] not in seen else "", labels[i], stale_cell(st["http"], cap),
                     stale_cell(st["db"], cap), stale_cell(st["direct"], cap, direct=True)))
        seen.add(r["slug"])
    return rows


# --- the deploy and durability benches -------------------------------------------------------

NOOP_HEADER = ("3 nodes, lab on this 2-core machine", "no-op, health report included", "floor", "ratio")


def noop_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    rows = []
    for r in runs:
        f = r["figures"]
        if f.get("nodes") == 3 and "noop_s" in f:
            rows.append((r["label"], span(f["noop_s"], " s"), f"{num(f['floor_s'])} s",
                         span([x / f["floor_s"] for x in f["noop_s"]], "x", lambda x: f"{x:.1f}")))
    return rows


def durability_header(runs: list[dict]) -> tuple[str, ...]:
    n = {r["config"]["sessions"] for r in runs}
    return ("innodb_flush_log_at_trx_commit", "median write", "1 session", f"{'/'.join(map(str, sorted(n)))} sessions")


def durability_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """The latest run of each value (older runs stay in the record file)."""
    runs = list({r["label"]: r for r in runs}.values())
    return [(r["label"], f"{r['figures']['median_ms']:.2f} ms", f"{r['figures']['one_session_wps']:.0f} writes/s",
             f"{r['figures']['sessions_wps']:.0f} writes/s") for r in runs]


BACKUP_HEADER = ("database (datadir)", "full backup", "floor: copy of the datadir", "ratio", "artifact", "verify",
                 "incremental", "disaster restore", "RPO")


def backup_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """The latest run of each label (older runs stay in the record file)."""
    runs = list({r["label"]: r for r in runs}.values())
    rows = []
    for r in runs:
        f = r["figures"]
        rows.append((f"{r['label']} ({f['datadir_mb']:.0f} MB)", f"{f['full_s']:.1f} s ({f['full_mb_per_s']:.0f} MB/s)",
                     f"{f['floor_s']:.1f} s", f"{f['full_s'] / f['floor_s']:.1f}x", f"{f['full_mb']:.1f} MB",
                     f"{f['verify_s']:.1f} s", f"{f['incremental_s']:.1f} s ({f['incremental_mb']:.1f} MB)",
                     f"{f['restore_s']:.1f} s", f"{f['rpo_s'] / 60:.0f} min"))
    return rows


UPGRADE_HEADER = ("rolling upgrade under load", "turns, in order", "the roll", "acknowledged: writes / messages", "lost",
                  "longest gap while rolling: writes / messages", "single-try writes the roll cost",
                  "GETs failed after one retry", "MariaDB rejoined by")


def upgrade_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """The latest run of each label (older runs stay in the record file)."""
    runs = list({r["label"]: r for r in runs}.values())
    rows = []
    for r in runs:
        f = r["figures"]
        gap = f["longest_gap_s"]
        rejoined = sorted(set(f["rejoined"].values()))
        rows.append((r["label"], " / ".join(f"{n} {s} s" for n, s in f["turns_s"].items()), f"{f['roll_s']} s",
                     f"{f['writes_acked']} / {f['messages_acked']}", str(f["lost"]),
                     f"{gap.get('writes', 0):.1f} s / {gap.get('messages', 0):.1f} s",
                     f"{f['failed_single_try']} in {f['events']} events (deadlocks apart: {f['deadlocks']})",
                     f"{f['gets']['failed']} of {f['gets']['ok'] + f['gets']['failed']}",
                     ", ".join(rejoined) or "-"))
    return rows


ALERTS_HEADER = ("Fault", "Alert", "Firing (bound)", "At the receiver (bound)", "Resolved after the heal (bound)")


def alerts_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """The alert drills (tests/lab/test_96_alerts.py), the latest run of each label: seconds
    after the fault and after the heal, each with its bound. An info alert goes to no receiver;
    the quiet drill is a row of its own."""
    runs = list({r["label"]: r for r in runs}.values())
    rows = []
    for r in runs:
        f, fault = r["figures"], r["config"]["fault"]
        if r["label"] == "quiet":
            restarts = ", ".join(f"{s} s" for s in f["rolling_restarts_s"])
            rows.append((f"{fault} ({restarts})", "none", "nothing firing" if not f["firing"] else f"{f['firing']} firing",
                         "nothing received" if not f["received"] else f"{f['received']} received", ""))
            continue
        info = "received_s" not in f
        rows.append((fault, f"{r['label']} (info)" if info else r["label"], f"{f['firing_s']} s ({f['firing_bound_s']})",
                     f"nothing naming {f['node']} (inhibited)" if info else f"{f['received_s']} s ({f['received_bound_s']})",
                     "resolved in Prometheus" if info else f"{f['resolved_s']} s ({f['resolved_bound_s']})"))
    return rows


LIFECYCLE = re.compile(r"first\s+deploy\s+onto\s+fresh\s+nodes\s+took\s+(\S+)\s+s\s+and\s+adding\s+two\s+nodes\s+to\s+the"
                       r"\s+running\s+clusters\s+(\S+)\s+s")


def lifecycle(runs: list[dict]) -> tuple[str, str]:
    """The first deploy's and the two added controllers' seconds, of the latest record."""
    f = [r["figures"] for r in runs if "first_deploy_s" in r["figures"]][-1]
    return num(f["first_deploy_s"]), num(f["grow_s"])


# --- all of them ----------------------------------------------------------------------------


def expected(page: str = "docs/failover.md") -> list[tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    """[(header, rows)] of every figure table the pages hold, from the records, as written in
    `page` (its links relative to it)."""
    return [(header, rows) for _, header, rows in named(page)]


def named(page: str = "docs/failover.md") -> list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]]:
    """[(name, header, rows)]: expected(), each table with the name its problems use."""
    runs = failover_runs()
    deploy, durability, backups = records.load("deploy"), records.load("durability"), records.load("backup")
    upgrades, alerts = records.load("upgrade"), records.load("alerts")
    return [("failover", FAILOVER_HEADER, failover_rows(runs, page)), ("stale connections", stale_header(runs), stale_rows(runs)),
            ("no-op", NOOP_HEADER, noop_rows(deploy)),
            ("durability", durability_header(durability), durability_rows(durability)),
            *([("backup", BACKUP_HEADER, backup_rows(backups))] if backups else []),
            *([("upgrade", UPGRADE_HEADER, upgrade_rows(upgrades))] if upgrades else []),
            *([("alerts", ALERTS_HEADER, alerts_rows(alerts))] if alerts else [])]


# Tables of the pages that hold settings or facts, not measurements: never from a record.
NOT_FIGURES = {
    ("listener", "address:port", "who may reach it", "protection"): "what listens where (the design)",
    ("account", "where from", "privileges"): "the accounts the deploy makes",
    ("component", "`--limit NODE`"): "what a limited run does",
    ("setting", "kernel / article", "deployed"): "settings: the kernel's defaults and the deploy's values",
    ("room", "what it holds"): "the lab's modules",
    ("Piece", "Where", "Checked by"): "monitoring's keys (ports, intervals, thresholds) and where they are checked",
}
MEASURED = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|x|writes/s|%)(\b|$)")


def problems(pages: dict[str, str]) -> list[str]:
    """Where the `pages` ({page: text}, read_pages()) and the records disagree, one line each ([]
    when they agree). Each figure table must be in some page; every copy of one is checked."""
    out = []
    found = {page: tables(text) for page, text in pages.items()}
    for name, header, _ in named():
        if not any(t.header == header for ts in found.values() for t in ts):
            out.append(f"{', '.join(pages)}: no {name} table with the header | {' | '.join(header)} |")
    for page, ts in found.items():
        want = {header: (name, rows) for name, header, rows in named(page)}
        for t in ts:
            if t.header not in want:
                continue
            name, rows = want[t.header]
            got = [tuple(c.replace("**", "") for c in r) for r in t.rows]
            for n, (g, w) in enumerate(zip(got, rows), 1):
                for col, a, b in zip(t.header, g, w):
                    if a != b:
                        out.append(f"{page} line {t.start + 2 + n}: {name} table, row {n}, {col!r}: {a!r}, the record says {b!r}")
            if len(got) != len(rows):
                out.append(f"{page}: the {name} table has {len(got)} rows, the records give {len(rows)}")
    known = {h for h, _ in expected()} | set(NOT_FIGURES)
    for page, ts in found.items():
        for t in ts:
            if t.header not in known and any(MEASURED.search(c) for r in t.rows for c in r):
                out.append(f"{page} line {t.start + 1}: table | {' | '.join(t.header)} | holds figures no record gives: add "
                           "its records (tests/bench/records.py) and its rows to tests/bench/figures.py, or to NOT_FIGURES if "
                           "they are settings, not measurements")
    want = lifecycle(records.load("deploy"))
    said = [(page, m) for page, text in pages.items() for m in LIFECYCLE.finditer(text)]
    if not said:
        out.append(f"{', '.join(pages)}: the first deploy's figures (\"first deploy onto fresh nodes took N s ...\") are gone")
    for page, m in said:
        if m.groups() != want:
            out.append(f"{page}: first deploy {m.group(1)} s, adding two nodes {m.group(2)} s; the record says {want[0]} s, "
                       f"{want[1]} s")
    return out


def write(text: str, page: str = "docs/failover.md") -> str:
    """`text`, the page `page`, with its figure tables rewritten from the records (the bold of a
    cell kept)."""
    lines = text.splitlines()
    found = {t.header: t for t in tables(text)}
    for header, rows in sorted(expected(page), key=lambda e: -found[e[0]].start if e[0] in found else 0):
        t = found.get(header)
        if t is None:
            continue
        old = {i: r for i, r in enumerate(t.rows)}
        rows = [tuple(f"**{c}**" if i in old and j < len(old[i]) and old[i][j] == f"**{c}**" else c
                      for j, c in enumerate(r)) for i, r in enumerate(rows)]
        lines[t.start:t.end] = markdown(header, rows)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--write" in argv:
        for page, text in read_pages().items():
            new = write(text, page)
            if new != text:
                (ROOT / page).write_text(new)
    else:
        for header, rows in expected():
            print("\n".join(markdown(header, rows)) + "\n")
    left = problems(read_pages())
    for p in left:
        print(p, file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
