"""A backup's manifest: the JSON file written beside each backup artifact, its loader (which
refuses a broken one with an error value, never an exception) and the comparison of a
restored database's per-table checksums with it (the rehearsal's verdict). Pure: no pyinfra,
no I/O. The backup script (files/templates/backup/) writes it; operations/backup_plan.py
decides from a list of them.

    {"format": 1, "id": "20261206T010000Z-full", "kind": "full", "parent": null,
     "node": "node03", "started": "2026-12-06T01:00:00Z", "finished": "2026-12-06T01:03:10Z",
     "status": "ok", "error": null,
     "galera": {"uuid": "a55b2b90-e8f4-11f1-9311-667e3b65f41b", "seqno": 1234},
     "lsn": {"from": 0, "to": 48213366},
     "artifact": "20261206T010000Z-full.mbstream.gz",
     "sizes": {"artifact_bytes": 5242880, "datadir_bytes": 104857600},
     "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
     "tables": {"keystone.user": {"rows": 12, "checksum": "3a1f0c22"}},
     "verified": true, "verify_note": "prepared a copy, started a throwaway mariadbd, 57 tables summed"}

`galera` is null for a backup taken without --galera-info (a restore refuses it); `verified`
is null until the verify step ran, false with `verify_note` saying why when it failed. A
failed backup (status "failed", `error` says which step) has no artifact, sha256 or sizes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

FORMAT = 1
KINDS = ("full", "incremental")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHA256 = re.compile(r"[0-9a-f]{64}")
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
TABLE = re.compile(r"[^\x00-\x1f.]+\.[^\x00-\x1f]+")  # db.table


@dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


@dataclass(frozen=True)
class Manifest:
    id: str
    kind: str  # "full" or "incremental"
    parent: str | None  # the backup an incremental applies on; None for a full
    node: str
    started: datetime
    finished: datetime | None
    status: str  # "ok" or "failed"
    error: str | None
    galera_uuid: str | None  # from galera-info; None: taken without it
    galera_seqno: int | None
    lsn_from: int | None
    lsn_to: int | None
    artifact: str | None
    artifact_bytes: int | None
    datadir_bytes: int | None
    sha256: str | None
    tables: tuple[tuple[str, TableSum], ...]
    verified: bool | None  # None: not verified yet
    verify_note: str

    @property
    def ok(self) -> bool:
        """Taken without error and not failed by its verification."""
        return self.status == "ok" and self.verified is not False

    @property
    def position(self) -> str | None:
        return None if self.galera_uuid is None else f"{self.galera_uuid}:{self.galera_seqno}"

    def table_sums(self) -> dict[str, TableSum]:
        return dict(self.tables)


@dataclass(frozen=True)
class ManifestError:
    """A manifest that cannot be used: where it came from and what is wrong, one line."""

    source: str
    why: str

    def __str__(self) -> str:
        return f"{self.source}: broken backup manifest: {self.why}"


def _time(value, key: str) -> datetime:
    if type(value) is not str:
        raise ValueError(f"{key} is {value!r}, not an ISO time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key} is {value!r}, not an ISO time") from None
    if t.tzinfo is None:
        raise ValueError(f"{key} {value!r} has no time zone (write it in UTC, ending in Z)")
    return t.astimezone(timezone.utc)


def _int(value, key: str, lo: int = 0) -> int:
    if type(value) is not int or value < lo:
        raise ValueError(f"{key} is {value!r}, not an integer >= {lo}")
    return value


def _parse(d) -> Manifest:
    if type(d) is not dict:
        raise ValueError("not a JSON object")
    if d.get("format") != FORMAT:
        raise ValueError(f"format is {d.get('format')!r}, this reader knows {FORMAT}")
    for key in ("id", "kind", "node", "started", "status", "tables"):
        if key not in d:
            raise ValueError(f"{key} missing")
    if type(d["id"]) is not str or not ID.fullmatch(d["id"]):
        raise ValueError(f"id is {d['id']!r}, not a backup name")
    if d["kind"] not in KINDS:
        raise ValueError(f"kind is {d['kind']!r}, not full or incremental")
    parent = d.get("parent")
    if d["kind"] == "incremental" and (type(parent) is not str or not ID.fullmatch(parent)):
        raise ValueError(f"an incremental backup names no parent (parent is {parent!r})")
    if d["kind"] == "full" and parent is not None:
        raise ValueError(f"a full backup has a parent ({parent!r})")
    if d["status"] not in ("ok", "failed"):
        raise ValueError(f"status is {d['status']!r}, not ok or failed")
    ok = d["status"] == "ok"
    galera = d.get("galera")
    if galera is not None:
        if type(galera) is not dict or type(galera.get("uuid")) is not str or not UUID.fullmatch(galera["uuid"]):
            raise ValueError(f"galera is {galera!r}, not {{uuid, seqno}} from galera-info")
        _int(galera.get("seqno"), "galera.seqno", -1)
    lsn = d.get("lsn")
    if lsn is not None and (type(lsn) is not dict or _int(lsn.get("from"), "lsn.from") > _int(lsn.get("to"), "lsn.to")):
        raise ValueError(f"lsn is {lsn!r}: from after to")
    sizes = d.get("sizes") or {}
    if type(sizes) is not dict:
        raise ValueError(f"sizes is {sizes!r}, not an object")
    if ok:
        if type(d.get("artifact")) is not str or not ID.fullmatch(d["artifact"]):
            raise ValueError(f"artifact is {d.get('artifact')!r}, not a file name")
        if type(d.get("sha256")) is not str or not SHA256.fullmatch(d["sha256"]):
            raise ValueError(f"sha256 is {d.get('sha256')!r}, not 64 lowercase hex digits")
        _int(sizes.get("artifact_bytes"), "sizes.artifact_bytes")
    elif type(d.get("error")) is not str or not d["error"]:
        raise ValueError("a failed backup says no error")
    for key in ("datadir_bytes",):
        if sizes.get(key) is not None:
            _int(sizes[key], f"sizes.{key}")
    tables = d["tables"]
    if type(tables) is not dict:
        raise ValueError(f"tables is {tables!r:.40}, not an object")
    sums = []
    for name, t in sorted(tables.items()):
        if not TABLE.fullmatch(name):
            raise ValueError(f"table {name!r} is not db.table")
        if type(t) is not dict or type(t.get("checksum")) is not str:
            raise ValueError(f"table {name}: {t!r:.40} is not {{rows, checksum}}")
        sums.append((name, TableSum(_int(t.get("rows"), f"table {name} rows"), t["checksum"])))
    verified = d.get("verified")
    if verified not in (True, False, None):
        raise ValueError(f"verified is {verified!r}, not true, false or null")
    note = d.get("verify_note") or ""
    if verified is False and not note:
        raise ValueError("verified is false and verify_note says not why")
    return Manifest(
        id=d["id"], kind=d["kind"], parent=parent, node=str(d["node"]),
        started=_time(d["started"], "started"),
        finished=None if d.get("finished") is None else _time(d["finished"], "finished"),
        status=d["status"], error=d.get("error"),
        galera_uuid=galera["uuid"] if galera else None, galera_seqno=galera["seqno"] if galera else None,
        lsn_from=lsn["from"] if lsn else None, lsn_to=lsn["to"] if lsn else None,
        artifact=d.get("artifact"), artifact_bytes=sizes.get("artifact_bytes"), datadir_bytes=sizes.get("datadir_bytes"),
        sha256=d.get("sha256"), tables=tuple(sums), verified=verified, verify_note=str(note),
    )


def load(text: str, source: str = "manifest") -> Manifest | ManifestError:
    """A manifest from its JSON text, or a ManifestError saying what is wrong. Pure."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        return ManifestError(source, f"not JSON ({str(exc).splitlines()[0][:80]})")
    try:
        return _parse(data)
    except ValueError as exc:
        return ManifestError(source, str(exc))


def to_dict(m: Manifest) -> dict:
    """The manifest as its JSON object (load(json.dumps(to_dict(m))) == m)."""
    z = lambda t: None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return {
        "format": FORMAT, "id": m.id, "kind": m.kind, "parent": m.parent, "node": m.node,
        "started": z(m.started), "finished": z(m.finished), "status": m.status, "error": m.error,
        "galera": None if m.galera_uuid is None else {"uuid": m.galera_uuid, "seqno": m.galera_seqno},
        "lsn": None if m.lsn_from is None else {"from": m.lsn_from, "to": m.lsn_to},
        "artifact": m.artifact, "sizes": {"artifact_bytes": m.artifact_bytes, "datadir_bytes": m.datadir_bytes},
        "sha256": m.sha256, "tables": {n: {"rows": t.rows, "checksum": t.checksum} for n, t in m.tables},
        "verified": m.verified, "verify_note": m.verify_note,
    }


# --- the rehearsal's comparison ---------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    table: str
    what: str  # "missing" (in the manifest, not restored), "extra", "rows", "checksum"
    expected: str
    got: str


@dataclass(frozen=True)
class Comparison:
    differences: tuple[Difference, ...]
    tables: int  # tables of the manifest compared
    rows: int  # rows the manifest counts in them

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        """The table of differences, then the verdict (the rehearsal's last line)."""
        out = [f"{'table':40} {'what':9} {'backup':>20} {'restored':>20}"] if self.differences else []
        out += [f"{d.table:40} {d.what:9} {d.expected:>20} {d.got:>20}" for d in self.differences]
        verdict = ("the checksums match" if self.ok else
                   f"{len(self.differences)} difference(s): the restored database is not the backup's")
        return out + [f"compared {self.tables} tables, {self.rows} rows: {verdict}"]


def compare(manifest: Manifest, restored: dict) -> Comparison:
    """The restored database's per-table sums ({"db.table": {"rows": n, "checksum": c}}, as
    the verify step computes them) against the manifest's, table by table. Pure."""
    want = manifest.table_sums()
    diffs = []
    for name in sorted(set(want) | set(restored)):
        if name not in restored:
            diffs.append(Difference(name, "missing", f"{want[name].rows} rows", "absent"))
            continue
        got = restored[name]
        if name not in want:
            diffs.append(Difference(name, "extra", "absent", f"{got.get('rows')} rows"))
            continue
        if got.get("rows") != want[name].rows:
            diffs.append(Difference(name, "rows", str(want[name].rows), str(got.get("rows"))))
        if got.get("checksum") != want[name].checksum:
            diffs.append(Difference(name, "checksum", want[name].checksum, str(got.get("checksum"))))
    return Comparison(tuple(diffs), len(want), sum(t.rows for t in want.values()))


def with_sums(manifest: Manifest, sums: dict) -> Manifest:
    """`manifest` holding the table sums `sums` ({"db.table": {"rows", "checksum"}}) instead of
    its own: the reference of a rehearsal of an incremental, whose manifest has none (its
    restored hosts are compared with the bootstrapped one). Pure."""
    tables = tuple((n, TableSum(int(t.get("rows") or 0), str(t.get("checksum")))) for n, t in sorted(sums.items()))
    return replace(manifest, tables=tables)


def rehearsal_lines(backup: str | None, comparisons: dict[str, Comparison], unsummed: list[str] = (),
                    reference: str = "manifest") -> list[str]:
    """The rehearsal's report: each restored host's verdict (Comparison.lines(), its table of
    differences first), then the last line: how many tables and rows were compared on how many
    hosts, against what, and whether the checksums match on every one. Pure."""
    out = []
    for name, c in comparisons.items():
        lines = c.lines()
        out += [f"{name}: {line}" for line in lines]
    against = "the manifest" if reference == "manifest" else f"{reference} (the manifest holds no table sums)"
    hosts = list(comparisons) + list(unsummed)
    first = next(iter(comparisons.values()), None)
    tables, rows = (first.tables, first.rows) if first else (0, 0)
    head = (f"restore-rehearsal of {backup}: compared {tables} tables, {rows} rows on each of {len(hosts)} restored "
            f"host(s) ({', '.join(hosts)}) against {against}")
    bad = [n for n, c in comparisons.items() if not c.ok]
    if not bad and not unsummed and comparisons:
        return out + [f"{head}: the checksums match"]
    said = []
    if bad:
        said.append(f"{sum(len(comparisons[n].differences) for n in bad)} difference(s) on {', '.join(bad)}")
    if unsummed:
        said.append(f"{', '.join(unsummed)} not summed")
    if not comparisons:
        said.append("no host summed")
    return out + [f"{head}: {'; '.join(said)}: the restored database is not the backup's"]
