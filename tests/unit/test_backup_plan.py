"""Backups' decisions as tables (operations/backup_plan.py): every controller's condition and
the backup directory's manifests in, the decision or the refusal out; the manifest's loader
and the rehearsal's comparison (facts/backup_manifest.py); the backup script rendered and
checked by bash -n; preflight's refusals of the backup keys.

Each row is one picture the timer or an operator can meet: members Synced, Donor, Joiner,
stopped, unreachable; the node the writer or in maintenance; a chain good, broken, of another
cluster; a disk with or without room. The rows name what the refusal must say.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from unitkit import FAKE_SECRETS, prod_data
from config import backup
from config.files import TEMPLATES, managed_files
from config.preflight import check
from config.site import build_site
from facts.backup_manifest import Manifest, ManifestError, compare, load, to_dict
from operations.backup_plan import CONFIRM_SWITCH, chain_from, restore, retention, take

ORDER = ["node01", "node02", "node03"]
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
OTHER = "b66c3c01-0000-11f1-9311-667e3b65f41b"
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
GiB = 2**30


def primary(state="Synced", uuid=UUID, size=3):
    return {"installed": True, "active": True, "mysqld": "running", "query": "ok",
            "wsrep_cluster_status": "Primary", "wsrep_local_state_comment": state, "wsrep_ready": "ON",
            "wsrep_cluster_size": str(size), "wsrep_last_committed": "100", "wsrep_cluster_state_uuid": uuid,
            "grastate_uuid": uuid, "grastate_seqno": "-1"}


STOPPED = {"installed": True, "active": False, "grastate_uuid": UUID, "grastate_seqno": "90"}
NON_PRIMARY = {**primary(), "wsrep_cluster_status": "non-Primary", "wsrep_local_state_comment": "Initialized"}
HEALTHY = {n: primary() for n in ORDER}


def sha(n: int) -> str:
    return f"{n:064x}"


def art(id: str) -> str:
    """The sha256 of backup `id`'s artifact, as its manifest records it."""
    return hashlib.sha256(id.encode()).hexdigest()


def mf(id, kind="full", parent=None, hours_ago=1.0, status="ok", verified=True, uuid=UUID, lsn=None,
       size=GiB, tables=None, note="") -> Manifest:
    """A manifest as the script and the verify step write it, loaded through the real loader."""
    started = NOW - timedelta(hours=hours_ago)
    d = {"format": 1, "id": id, "kind": kind, "parent": parent, "node": "node03",
         "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "finished": None, "status": status,
         "error": None if status == "ok" else "mariadb-backup failed (exit 1)",
         "galera": None if uuid is None else {"uuid": uuid, "seqno": 1000},
         "lsn": None if lsn is None else {"from": lsn[0], "to": lsn[1]},
         "artifact": f"{id}.mbstream.gz" if status == "ok" else None,
         "sizes": {"artifact_bytes": size if status == "ok" else None, "datadir_bytes": 4 * GiB},
         "sha256": art(id) if status == "ok" else None,
         "tables": tables or {}, "verified": verified, "verify_note": note or ("" if verified is not False else "prepare failed")}
    m = load(json.dumps(d), id)
    assert isinstance(m, Manifest), m
    return m


FULL = mf("f1", lsn=(0, 500), hours_ago=8)
INC1 = mf("i1", "incremental", "f1", lsn=(500, 600), hours_ago=7, verified=None)
INC2 = mf("i2", "incremental", "i1", lsn=(600, 700), hours_ago=6, verified=None)
ROOM = 10 * GiB


# --- taking a backup: (case, states, node, away, manifests, asked, free, expected) -------------------
# expected: {"kind": ..., "parent": ..., "notes": regex} for an allowed backup, or a regex the
# refusals (joined by " | ") must match.
TAKE = [
    ("healthy, a full asked: full", HEALTHY, "node03", (), [], "full", ROOM, {"kind": "full", "parent": None}),
    ("healthy, incremental on the full", HEALTHY, "node03", (), [FULL], "incremental", ROOM,
     {"kind": "incremental", "parent": "f1"}),
    ("incremental chains to the newest incremental", HEALTHY, "node03", (), [FULL, INC1, INC2], "incremental", ROOM,
     {"kind": "incremental", "parent": "i2"}),
    ("incremental without any full: a full, said", HEALTHY, "node03", (), [], "incremental", ROOM,
     {"kind": "full", "notes": r"no good full backup .* taking a full"}),
    ("incremental on a full of another cluster: a full, said", HEALTHY, "node03", (), [mf("f0", uuid=OTHER)],
     "incremental", ROOM, {"kind": "full", "notes": "no good full"}),
    ("incremental, the only full failed its verification: a full", HEALTHY, "node03", (), [mf("f0", verified=False)],
     "incremental", ROOM, {"kind": "full", "notes": "no good full"}),
    ("a failed incremental is skipped: chain to the last good one", HEALTHY, "node03", (),
     [FULL, INC1, mf("i2x", "incremental", "i1", hours_ago=6.5, status="failed", verified=None)], "incremental", ROOM,
     {"kind": "incremental", "parent": "i1"}),
    ("broken chain (parent deleted): a full, said", HEALTHY, "node03", (),
     [FULL, mf("i9", "incremental", "gone", hours_ago=5, verified=None)], "incremental", ROOM,
     {"kind": "full", "notes": r"chain of f1 is broken \(i9 applies on gone, which is not among"}),
    ("broken chain (LSN gap): a full, said", HEALTHY, "node03", (),
     [FULL, mf("i1", "incremental", "f1", lsn=(510, 600), hours_ago=7, verified=None)], "incremental", ROOM,
     {"kind": "full", "notes": r"starts at LSN 510, its parent f1 ends at 500"}),
    ("broken chain (a branch): a full, said", HEALTHY, "node03", (),
     [FULL, INC1, mf("i1b", "incremental", "f1", lsn=(500, 650), hours_ago=6, verified=None)], "incremental", ROOM,
     {"kind": "full", "notes": r"i1b applies on f1, not on the newest link i1\)"}),
    ("an incremental started the second its full did (a small database): chained", HEALTHY, "node03", (),
     [FULL, mf("i1", "incremental", "f1", lsn=(500, 600), hours_ago=8, verified=None)], "incremental", ROOM,
     {"kind": "incremental", "parent": "i1"}),
    ("manifests without LSNs: chained by their parents", HEALTHY, "node03", (),
     [mf("f2", hours_ago=8), mf("i3", "incremental", "f2", hours_ago=7, verified=None)], "incremental", ROOM,
     {"kind": "incremental", "parent": "i3"}),
    # --- refusals ---
    ("on the writer: refused", HEALTHY, "node01", (), [], "full", ROOM, r"node01 is the database writer"),
    ("on a node in maintenance: refused", HEALTHY, "node03", ("node03",), [], "full", ROOM, r"node03 is in maintenance"),
    ("a Donor: refused, naming it", {**HEALTHY, "node02": primary("Donor/Desynced")}, "node03", (), [], "full", ROOM,
     r"node02 in a Primary component of 3, Donor/Desynced.*not Synced"),
    ("a Joiner: refused", {**HEALTHY, "node01": primary("Joiner")}, "node03", (), [], "full", ROOM, r"node01 .*Joiner"),
    ("a stopped member: refused", {**HEALTHY, "node02": STOPPED}, "node03", (), [], "full", ROOM,
     r"node02 mariadb stopped.*not Synced"),
    ("an unreachable member: refused", {**HEALTHY, "node01": None}, "node03", (), [], "full", ROOM, r"node01 did not answer"),
    ("the backup node itself out of the Primary: refused", {**HEALTHY, "node03": NON_PRIMARY}, "node03", (), [], "full",
     ROOM, r"node03 mariadb running, non-Primary"),
    ("not a controller: refused", HEALTHY, "node09", (), [], "full", ROOM, r"node09 is not a controller"),
    ("no room for the last full + 50%: refused", HEALTHY, "node03", (), [FULL], "incremental", int(1.49 * GiB),
     r"1526 MiB free.*wants 1536 MiB \(the last full f1's 1024 MiB \+ 50%\)"),
    ("room for exactly the last full + 50%: allowed", HEALTHY, "node03", (), [FULL], "incremental", int(1.5 * GiB),
     {"kind": "incremental"}),
    ("first full: checked against the datadir", HEALTHY, "node03", (), [], "full", 5 * GiB,
     r"wants 6144 MiB \(the datadir's 4096 MiB"),
    ("the first full of this cluster: sized by another cluster's last full", HEALTHY, "node03", (),
     [mf("f0", uuid=OTHER)], "full", GiB, r"wants 1536 MiB \(the last full f0's 1024 MiB \+ 50%\)"),
    ("free space unknown: refused", HEALTHY, "node03", (), [FULL], "full", None, r"free space .* unknown"),
    ("every reason at once", {**HEALTHY, "node02": None}, "node01", ("node01",), [], "full", 0,
     r"writer.*maintenance.*node02 did not answer.*free"),
]


def meets(decision, expected) -> None:
    """A Take or a Restore is what the row expects: a refusal matching the regex `expected`, or
    allowed with the fields of `expected` (`notes`: a regex; without it, no note)."""
    if isinstance(expected, str):
        assert not decision.allowed, decision
        assert re.search(expected, " | ".join(decision.refusals)), decision.refusals
        return
    assert decision.allowed, decision.refusals
    for field, want in expected.items():
        got = getattr(decision, field)
        assert re.search(want, " | ".join(got)) if field == "notes" else got == want, (field, decision)
    if "notes" not in expected and hasattr(decision, "notes"):
        assert decision.notes == (), decision.notes


@pytest.mark.parametrize("case,states,node,away,manifests,asked,free,expected", TAKE, ids=[c[0] for c in TAKE])
def test_take(case, states, node, away, manifests, asked, free, expected):
    meets(take(states, ORDER, node, "node01", frozenset(away), manifests, asked, free, datadir_bytes=4 * GiB), expected)


def test_the_take_table_covers_every_condition():
    def kind(st):
        if st is None:
            return "unreachable"
        if st.get("wsrep_cluster_status") == "Primary":
            return st["wsrep_local_state_comment"].split("/")[0]
        return "running outside" if st.get("mysqld") == "running" else "stopped"
    seen = {kind(st) for _, states, *_ in TAKE for st in states.values()}
    assert seen >= {"unreachable", "Synced", "Donor", "Joiner", "running outside", "stopped"}
    assert {c[5] for c in TAKE} == {"full", "incremental"}
    assert any(c[3] for c in TAKE) and len(TAKE) >= 20


def test_a_split_cluster_is_refused_even_when_each_side_says_synced():
    # two Primary components of one uuid with disjoint members (node03 alone)
    states = {n: primary() | {"wsrep_incoming_addresses": "10.0.0.1:3306,10.0.0.2:3306"} for n in ORDER[:2]}
    states["node03"] = primary(size=1) | {"wsrep_incoming_addresses": "10.0.0.3:3306"}
    t = take(states, ORDER, "node03", "node01", manifests=[], free_bytes=ROOM, datadir_bytes=GiB)
    assert not t.allowed and any("2 Primary components" in r for r in t.refusals), t.refusals


def test_chain_from_ignores_an_older_fulls_incrementals():
    old = mf("f0", lsn=(0, 100), hours_ago=30)
    stray = mf("i0", "incremental", "f0", lsn=(100, 200), hours_ago=7.5, verified=None)
    chain, broken = chain_from(FULL, [old, stray, FULL, INC1])
    assert [m.id for m in chain] == ["f1", "i1"] and broken == ""


# --- retention: (case, manifests, days, deleted, kept-with-why) -------------------------------------

DAY = 24


def full(id, days_ago, verified=True, status="ok"):
    return mf(id, hours_ago=days_ago * DAY, verified=verified, status=status)


def inc(id, parent, days_ago):
    return mf(id, "incremental", parent, hours_ago=days_ago * DAY, verified=None)


RETENTION = [
    ("nothing old: nothing deleted", [full("a", 1), full("b", 2)], 14, [], {}),
    ("fulls past the days deleted", [full("a", 20), full("b", 15), full("c", 1)], 14, ["a", "b"], {}),
    ("14 days exactly is kept, a minute more is not", [mf("edge", hours_ago=14 * DAY), mf("past", hours_ago=14 * DAY + 0.02),
                                                       full("new", 0.5)], 14, ["past"], {}),
    ("the newest verified full is never deleted", [full("v", 20), full("u1", 2, verified=False), full("u2", 1, verified=False)],
     14, [], {"v": "the newest verified full"}),
    ("every full old: the newest verified stays", [full("a", 30), full("b", 20)], 14, ["a"],
     {"b": "the newest verified full"}),
    ("every full old, the newest unverified: it stays, and the newest verified", [full("a", 30), full("b", 25),
     full("c", 20, verified=None)], 14, ["a"], {"b": "the newest verified full", "c": "the newest full"}),
    ("a full an incremental still needs is kept", [full("a", 15), inc("a1", "a", 14.5), inc("a2", "a1", 13), full("b", 2)],
     14, [], {"a": "a2 applies on it", "a1": "a2 applies on it"}),
    ("an old chain goes with its full", [full("a", 20), inc("a1", "a", 19), inc("a2", "a1", 18), full("b", 1)], 14,
     ["a", "a1", "a2"], {}),
    ("every backup old, the newest a failed full: it goes, the last good full stays",
     [full("a", 20), full("x", 16, status="failed", verified=None)], 14, ["x"], {"a": "the newest verified full"}),
    ("an old full kept as the newest verified keeps its incrementals", [full("a", 20), inc("a1", "a", 19)], 14, [],
     {"a": "the newest verified full"}),
    ("old failed backups are deleted, young ones kept", [full("x", 16, status="failed", verified=None),
                                                        full("y", 1, status="failed", verified=None), full("b", 1)],
     14, ["x"], {}),
    ("an old orphan incremental is deleted", [inc("o", "gone", 15), full("b", 1)], 14, ["o"], {}),
    ("incrementals whose parents loop: no hang, the old one deleted", [inc("la", "lb", 15), inc("lb", "la", 16), full("b", 1)],
     14, ["lb", "la"], {}),
    ("a young incremental in a loop keeps its partner", [inc("la", "lb", 1), inc("lb", "la", 16), full("b", 1)],
     14, [], {"lb": "la applies on it"}),
]


@pytest.mark.parametrize("case,manifests,days,deleted,kept", RETENTION, ids=[c[0] for c in RETENTION])
def test_retention(case, manifests, days, deleted, kept):
    r = retention(manifests, NOW, days)
    assert list(r.delete) == deleted, r
    assert set(r.delete) | set(r.keep) == {m.id for m in manifests} and not set(r.delete) & set(r.keep)
    assert dict(r.why_kept) == kept, r.why_kept


def host_retention():
    """files/templates/backup/_retention.py, the rule as the backup node applies it."""
    spec = importlib.util.spec_from_file_location("retention_on_host", TEMPLATES_DIR / "_retention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case,manifests,days,deleted,kept", RETENTION, ids=[c[0] for c in RETENTION])
def test_the_backup_node_deletes_what_the_plan_deletes(case, manifests, days, deleted, kept):
    on_host = host_retention().expired([json.loads(json.dumps(to_dict(m))) for m in manifests], NOW, days)
    assert on_host == list(retention(manifests, NOW, days).delete) == deleted


def test_the_backup_node_deletes_every_file_of_an_expired_backup_and_keeps_the_rest(tmp_path):
    old, young = full("old", 20), full("young", 1)
    for m in (old, young):
        (tmp_path / f"{m.id}{backup.MANIFEST_SUFFIX}").write_text(json.dumps(to_dict(m)))
        (tmp_path / m.artifact).write_bytes(b"x")
        (tmp_path / f"{m.artifact}.sha256").write_text("x")
        (tmp_path / f"{m.id}.lsn").mkdir()
    (tmp_path / "broken.manifest.json").write_text('{"id": "broken", "started": "2020-01-01T00:00:00Z"}')
    code = (TEMPLATES_DIR / "_retention.py").read_text()
    done = subprocess.run(["python3", "-c", code, str(tmp_path), "14"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["old", f"old{backup.MANIFEST_SUFFIX}", "old.lsn", old.artifact, f"{old.artifact}.sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["broken.manifest.json", f"young{backup.MANIFEST_SUFFIX}", young.artifact, f"{young.artifact}.sha256", "young.lsn"])


# --- restoring: (case, manifests, target, sha256s, cluster, states, disaster, confirmed, expected) --------

def shas(*ms):
    return {m.id: m.sha256 for m in ms}


STOPPED_ALL = {n: STOPPED for n in ORDER}
FRESH = {"node11": {"installed": True, "active": False}, "node12": {"installed": False}}
RESTORE = [
    ("the latest: the chain full first", [FULL, INC1, INC2], None, shas(FULL, INC1, INC2), UUID, FRESH, False, False,
     {"chain": ("f1", "i1", "i2"), "position": f"{UUID}:1000"}),
    ("a chain without LSNs: by its parents", [mf("f2", hours_ago=8), mf("i3", "incremental", "f2", hours_ago=7, verified=None)],
     "i3", {"f2": art("f2"), "i3": art("i3")}, UUID, FRESH, False, False, {"chain": ("f2", "i3")}),
    ("a named full", [FULL, INC1], "f1", shas(FULL), UUID, FRESH, False, False, {"chain": ("f1",)}),
    ("disaster restore, confirmed, every node stopped", [FULL], "f1", shas(FULL), UUID, STOPPED_ALL, True, True,
     {"chain": ("f1",)}),
    # --- the refusals of issue 18 item 6 ---
    ("a flipped byte: sha256 mismatch", [FULL, INC1], "i1", {**shas(FULL, INC1), "i1": sha(7)}, UUID, FRESH, False, False,
     rf"i1: sha256 of i1.mbstream.gz is 000000000000\.\.\., the manifest says {art('i1')[:12]}\.\.\.: .*changed"),
    ("a missing artifact", [FULL, INC1], "i1", shas(FULL), UUID, FRESH, False, False, r"i1: artifact i1.mbstream.gz not found"),
    ("a broken incremental chain (parent gone)", [INC1, INC2], "i2", shas(INC1, INC2), UUID, FRESH, False, False,
     r"broken incremental chain: i1 applies on f1, which is not among"),
    ("a broken incremental chain (LSN gap)", [FULL, INC1, mf("i2", "incremental", "i1", lsn=(650, 700), hours_ago=6, verified=None)],
     "i2", {"f1": FULL.sha256, "i1": INC1.sha256, "i2": art("i2")}, UUID, FRESH, False, False,
     r"broken incremental chain: i2 starts at LSN 650, i1 ends at 600"),
    ("a broken chain (a failed parent)", [FULL, mf("i1", "incremental", "f1", status="failed", verified=None, hours_ago=7),
                                          mf("i2", "incremental", "i1", hours_ago=6, verified=None)], "i2",
     {"f1": FULL.sha256, "i2": art("i2")}, UUID, FRESH, False, False, r"i2 applies on i1, which mariadb-backup failed"),
    ("a backup of another cluster", [mf("f9", uuid=OTHER)], "f9", {"f9": art("f9")}, UUID, FRESH, False, False,
     rf"f9 is a backup of cluster {OTHER}, not of this cluster \({UUID}\)"),
    ("onto a running cluster", [FULL], "f1", shas(FULL), UUID, {**STOPPED_ALL, "node02": primary()}, True, True,
     r"restore onto a running cluster \(node02 in a Primary component.*stop mariadb on every node"),
    ("onto nodes that did not answer", [FULL], "f1", shas(FULL), UUID, {"node11": None}, False, False,
     r"running cluster \(node11 did not answer\)"),
    ("a backup without galera-info", [mf("f0", uuid=None)], "f0", {"f0": art("f0")}, UUID, FRESH, False, False,
     r"f0 was taken without galera-info"),
    ("a disaster restore not confirmed", [FULL], "f1", shas(FULL), UUID, STOPPED_ALL, True, False,
     rf"confirm with --data confirm=f1 or {CONFIRM_SWITCH}=f1 \(make restore BACKUP=f1 CONFIRM=f1\)"),
    ("a full that failed its verification", [mf("f0", verified=False, note="mariadbd did not start")], "f0",
     {"f0": art("f0")}, UUID, FRESH, False, False, r"f0 failed its verification \(mariadbd did not start\)"),
    ("an incremental on a full that failed its verification", [mf("f0", verified=False, note="mariadbd did not start"),
     mf("i0", "incremental", "f0", hours_ago=0.5, verified=None)], "i0", {"f0": art("f0"), "i0": art("i0")}, UUID, FRESH,
     False, False, r"broken incremental chain: i0 applies on f0, which mariadbd did not start"),
    ("a named incremental that failed its verification (its chain's prepare)", [FULL, mf("i1", "incremental", "f1",
     lsn=(500, 600), hours_ago=7, verified=False, note="prepare failed")], "i1", shas(FULL, INC1), UUID, FRESH, False, False,
     r"i1 failed its verification \(prepare failed\)"),
    ("a failed backup named", [mf("fx", status="failed", verified=None)], "fx", {}, UUID, FRESH, False, False,
     r"fx failed when it was taken"),
    ("a chain whose parents loop", [mf("la", "incremental", "lb", hours_ago=2, verified=None),
                                    mf("lb", "incremental", "la", hours_ago=1, verified=None)], "lb",
     {"la": art("la"), "lb": art("lb")}, UUID, FRESH, False, False, r"broken incremental chain: la's parents loop back to lb"),
    ("no such backup", [FULL], "nope", shas(FULL), UUID, FRESH, False, False, r"no backup named nope"),
    ("no good backup at all", [], None, {}, UUID, FRESH, False, False, r"no good backup"),
]


@pytest.mark.parametrize("case,manifests,target,sums,cluster,states,disaster,confirmed,expected", RESTORE,
                         ids=[c[0] for c in RESTORE])
def test_restore(case, manifests, target, sums, cluster, states, disaster, confirmed, expected):
    meets(restore(manifests, target, sums, cluster, states, disaster=disaster, confirmed=confirmed), expected)


def test_a_restore_is_not_a_disaster_unless_said_and_a_disaster_is_not_confirmed_unless_said():
    assert restore([FULL], "f1", shas(FULL), UUID, FRESH).allowed
    got = restore([FULL], "f1", shas(FULL), UUID, STOPPED_ALL, disaster=True)
    assert not got.allowed and got.refusals[-1].endswith(f"confirm with --data confirm=f1 or {CONFIRM_SWITCH}=f1 (make restore BACKUP=f1 CONFIRM=f1)"), \
        got.refusals


def test_each_refusal_of_the_issue_has_a_row():
    names = " ".join(c[0] for c in RESTORE)
    for what in ("flipped byte", "broken incremental chain", "another cluster", "running cluster", "without galera-info"):
        assert what in names, what


# --- the manifest ----------------------------------------------------------------------------------

GOOD = to_dict(FULL)
BROKEN = [
    ("not JSON", "{", r"not JSON"),
    ("a list", "[]", r"not a JSON object"),
    ("another format", {**GOOD, "format": 2}, r"format is 2"),
    ("no id", {k: v for k, v in GOOD.items() if k != "id"}, r"id missing"),
    ("an id with a slash", {**GOOD, "id": "../etc"}, r"not a backup name"),
    ("a kind unknown", {**GOOD, "kind": "differential"}, r"not full or incremental"),
    ("an incremental without parent", {**GOOD, "kind": "incremental"}, r"names no parent"),
    ("a full with a parent", {**GOOD, "parent": "f0"}, r"a full backup has a parent"),
    ("a short sha256", {**GOOD, "sha256": "abc"}, r"sha256 is 'abc'"),
    ("an uppercase sha256", {**GOOD, "sha256": "A" * 64}, r"not 64 lowercase hex"),
    ("a galera-info without uuid", {**GOOD, "galera": {"seqno": 3}}, r"not \{uuid, seqno\}"),
    ("a negative size", {**GOOD, "sizes": {"artifact_bytes": -1}}, r"artifact_bytes is -1"),
    ("a time without zone", {**GOOD, "started": "2026-12-06T01:00:00"}, r"no time zone"),
    ("rows as text", {**GOOD, "tables": {"nova.instances": {"rows": "12", "checksum": "ab"}}}, r"nova.instances rows"),
    ("a table without db", {**GOOD, "tables": {"instances": {"rows": 1, "checksum": "ab"}}}, r"not db.table"),
    ("verified false without why", {**GOOD, "verified": False, "verify_note": ""}, r"says not why"),
    ("a failed backup without error", {**GOOD, "status": "failed", "error": None}, r"says no error"),
    ("lsn backwards", {**GOOD, "lsn": {"from": 9, "to": 3}}, r"from after to"),
]


@pytest.mark.parametrize("case,data,why", BROKEN, ids=[c[0] for c in BROKEN])
def test_a_broken_manifest_is_an_error_value(case, data, why):
    got = load(data if isinstance(data, str) else json.dumps(data), "node03:/b/x.manifest.json")
    assert isinstance(got, ManifestError), got
    assert re.search(why, got.why), got.why
    assert str(got).startswith("node03:/b/x.manifest.json: broken backup manifest: ")


def test_a_manifest_round_trips():
    m = mf("f5", tables={"keystone.user": {"rows": 3, "checksum": "c1"}}, lsn=(1, 2))
    assert load(json.dumps(to_dict(m))) == m
    assert m.position == f"{UUID}:1000" and m.table_sums()["keystone.user"].rows == 3


# --- the rehearsal's comparison ----------------------------------------------------------------------

TABLES = {"keystone.user": {"rows": 3, "checksum": "c1"}, "nova.instances": {"rows": 10, "checksum": "c2"}}


def test_equal_checksums_say_so_on_the_last_line():
    c = compare(mf("f6", tables=TABLES), json.loads(json.dumps(TABLES)))
    assert c.ok and c.lines() == ["compared 2 tables, 13 rows: the checksums match"]


@pytest.mark.parametrize("restored,what", [
    ({"keystone.user": TABLES["keystone.user"]}, [("nova.instances", "missing")]),
    ({**TABLES, "nova.extra": {"rows": 1, "checksum": "x"}}, [("nova.extra", "extra")]),
    ({**TABLES, "nova.instances": {"rows": 9, "checksum": "c2"}}, [("nova.instances", "rows")]),
    ({**TABLES, "nova.instances": {"rows": 10, "checksum": "zz"}}, [("nova.instances", "checksum")]),
    ({**TABLES, "keystone.user": {"rows": 4, "checksum": "c9"}}, [("keystone.user", "rows"), ("keystone.user", "checksum")]),
], ids=["missing", "extra", "rows", "checksum", "both"])
def test_differences_are_a_table(restored, what):
    c = compare(mf("f7", tables=TABLES), restored)
    assert [(d.table, d.what) for d in c.differences] == what
    lines = c.lines()
    assert lines[0].split()[:2] == ["table", "what"] and len(lines) == len(what) + 2
    assert re.fullmatch(rf"compared 2 tables, 13 rows: {len(what)} difference\(s\).*", lines[-1])


# --- the backup script --------------------------------------------------------------------------------

TEMPLATES_DIR = TEMPLATES / "backup"


def script_of(site) -> str:
    """The backup script as the deploy installs it on the site's backup node (config/files.py)."""
    node = backup.node([c.name for c in site.controllers], site.data)
    return next(f.content for f in managed_files(site, node, {}, "backup") if f.path == backup.SCRIPT)


def site_with(**changes):
    h, g = prod_data()
    g.update({"backup_enabled": True, **changes})
    return h, g


@pytest.mark.parametrize("changes", [{}, {"backup_compress": "zstd", "backup_copy_to": "backup@192.0.2.9",
                                          "backup_copy_dir": "/srv/copies", "mariadb_check_method": "mysql-check",
                                          "mariadb_check_port": 3306}], ids=["defaults", "zstd-ssh-mysqlcheck"])
def test_the_script_renders_and_bash_accepts_it(changes, tmp_path):
    h, g = site_with(**changes)
    assert not check(h, g, secrets=dict(FAKE_SECRETS)).errors
    text = script_of(build_site(h, g))
    path = tmp_path / "openstack-ha-backup"
    path.write_text(text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "{{" not in text and "{%" not in text
    # the order that keeps the cluster safe: checks, then the trap, then the desync, then the backup
    at = text.index
    assert at("in maintenance") < at("wsrep_cluster_size") < at("trap finish EXIT") < at('q "SET GLOBAL wsrep_desync=ON"') \
        < at("mariadb-backup --backup --galera-info --stream=mbstream") < at("sha256sum")
    assert "set -euo pipefail" in text and 'q "SET GLOBAL wsrep_desync=OFF"' in text[text.index("finish() {"):]
    assert "DIR=/var/backups/openstack-ha/mariadb" in text and "node03" in text
    if changes:
        assert "| zstd -q -c -T0 |" in text and "backup@192.0.2.9:/srv/copies/" in text and "/dev/tcp" not in text
    else:
        # defaults: gzip, copied to node02 (the controller before node03), the peers asked whether Synced
        assert "| gzip -c |" in text and "100.2.30.42:/var/backups/openstack-ha/mariadb/" in text
        assert text.count("/dev/tcp/") == 2 and "100.2.30.41 9200" in text and "100.2.30.42 9200" in text


class FakeHost:
    """The rendered script run on this machine against fakes of mysql (a Synced member of 3,
    logging each statement), mariadb-backup (`body`: a shell script), ssh and scp (copy into
    a local directory); the peers' HTTP checks are left out (nothing listens here)."""

    def __init__(self, tmp_path, body: str):
        self.root, self.dir, self.log, self.copies = tmp_path, tmp_path / "b", tmp_path / "sql.log", tmp_path / "copies"
        h, g = site_with(backup_dir=str(self.dir), backup_copy_to="backup@192.0.2.9", backup_copy_dir=str(self.copies))
        text = script_of(build_site(h, g))
        text = text.replace("/var/lib/openstack-ha/maintenance", str(tmp_path / "maint"))
        text = text.replace("DATADIR=/var/lib/mysql", f"DATADIR={tmp_path}/data")
        text = re.sub(r"if ! answer=\$\(timeout 5 bash -c .*?\n.*?\n.*?\nfi\n", "", text, flags=re.S)
        assert "/dev/tcp" not in text
        for d in ("data", "b", "copies", "bin"):
            (tmp_path / d).mkdir(exist_ok=True)
        (tmp_path / "data" / "ibdata1").write_bytes(b"x" * 4096)
        self.script = tmp_path / "backup.sh"
        self.script.write_text(text)
        fakes = {
            "mysql": f"""q="${{@: -1}}"; echo "$q" >> {self.log}
case "$q" in
  *"Variable_name IN"*) printf 'wsrep_cluster_status\\tPrimary\\nwsrep_local_state_comment\\tSynced\\nwsrep_ready\\tON\\n';;
  *wsrep_cluster_size*) printf 'wsrep_cluster_size\\t3\\n';;
  *wsrep_local_state_comment*) printf 'x\\tSynced\\n';;
  *wsrep_cluster_state_uuid*) printf 'x\\t{UUID}\\n';;
esac""",
            "mariadb-backup": body,
            "ssh": "exit 0",
            "scp": 'args=(); skip=; for a in "$@"; do [ -n "$skip" ] && { skip=; continue; }; '
                   'case "$a" in -o|-i) skip=1;; -*) ;; *) args+=("$a");; esac; done; '
                   'cp "${args[@]:0:${#args[@]}-1}" "${args[-1]#*:}"',
        }
        for name, code in fakes.items():
            (tmp_path / "bin" / name).write_text("#!/bin/bash\n" + code + "\n")
            (tmp_path / "bin" / name).chmod(0o755)

    def run(self, asked: str):
        env = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin"}
        return subprocess.run(["bash", str(self.script), asked], capture_output=True, text=True, env=env, timeout=60)

    def manifests(self) -> list[Manifest]:
        out = [load(p.read_text(), p.name) for p in sorted(self.dir.glob("*" + backup.MANIFEST_SUFFIX))]
        assert all(isinstance(m, Manifest) for m in out), out
        return out

    def statements(self) -> list[str]:
        return self.log.read_text().splitlines()


# A mariadb-backup that streams bytes with galera-info 1.5 MB before the end (as with the lab's
# 540 MB datadir, where a tail of 1 MiB missed it) and writes its checkpoints
# into --extra-lsndir, as mbstream does (the LSNs follow on from the base for an incremental).
BACKUP_OK = f"""for a in "$@"; do case "$a" in --extra-lsndir=*) d=${{a#*=}};; --incremental-basedir=*) base=${{a#*=}};; esac; done
from=0; [ -n "${{base:-}}" ] && from=$(sed -n 's/^to_lsn = //p' "$base/xtrabackup_checkpoints")
printf 'from_lsn = %s\\nto_lsn = %s\\n' "$from" $((from + 100)) > "$d/xtrabackup_checkpoints"
head -c 200000 /dev/urandom; printf 'XBSTCK01xtrabackup_galera_info\\x01\\x02{UUID}:4242\\n'; head -c 1500000 /dev/urandom"""


def test_the_script_takes_a_full_then_an_incremental_chained_to_it(tmp_path):
    host = FakeHost(tmp_path, BACKUP_OK)
    done = host.run("incremental")  # nothing to chain to yet: a full, said
    assert done.returncode == 0, done.stderr
    assert "no full backup to chain to: taking a full instead" in done.stderr
    done = host.run("incremental")
    assert done.returncode == 0, done.stderr
    full, inc = sorted(host.manifests(), key=lambda m: m.kind)
    assert (full.kind, full.parent, inc.kind, inc.parent) == ("full", None, "incremental", full.id)
    assert (full.lsn_from, full.lsn_to, inc.lsn_from, inc.lsn_to) == (0, 100, 100, 200)
    for m in (full, inc):
        data = (host.dir / m.artifact).read_bytes()
        assert m.status == "ok" and m.position == f"{UUID}:4242" and m.verified is None
        assert hashlib.sha256(data).hexdigest() == m.sha256 == (host.dir / f"{m.artifact}.sha256").read_text().strip()
        assert m.artifact_bytes == len(data) and m.artifact.endswith(".gz") and data[:2] == b"\x1f\x8b"
        assert (host.copies / m.artifact).read_bytes() == data and (host.copies / f"{m.id}.manifest.json").exists()
    assert (host.dir / "chain").read_text().strip() == inc.id
    # the plan, given what the script wrote, chains the next incremental the same way
    t = take(HEALTHY, ORDER, "node03", "node01", manifests=host.manifests(), asked="incremental", free_bytes=ROOM)
    assert t.allowed and (t.kind, t.parent) == ("incremental", inc.id), t
    sql = host.statements()
    assert sql.count("SET GLOBAL wsrep_desync=ON") == 2 == sql.count("SET GLOBAL wsrep_desync=OFF")
    assert not list(host.dir.glob("*.part")) and not list(host.dir.glob("*/positions*"))


def test_the_script_fails_cleanly_when_the_backup_fails(tmp_path):
    """A backup that fails midway (a full disk) exits non-zero, writes a failed manifest,
    leaves no partial artifact, sets wsrep_desync OFF again and keeps the backups there."""
    host = FakeHost(tmp_path, BACKUP_OK)
    assert host.run("full").returncode == 0
    (host.root / "bin" / "mariadb-backup").write_text("#!/bin/bash\nhead -c 1000 /dev/zero; echo 'No space left on device' >&2; exit 1\n")
    before = {p.name: p.read_bytes() for p in host.dir.iterdir() if p.is_file()}
    done = host.run("incremental")
    assert done.returncode != 0, done.stderr
    assert "failed at mariadb-backup" in done.stderr and "previous backups are untouched" in done.stderr
    after = {p.name: p.read_bytes() for p in host.dir.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before, "an earlier backup was changed"
    assert not any(name.endswith(".part") for name in after), sorted(after)
    ok, failed = sorted(host.manifests(), key=lambda m: m.status, reverse=True)
    assert (ok.status, failed.status, failed.kind, failed.parent) == ("ok", "failed", "incremental", ok.id)
    assert "mariadb-backup failed" in failed.error and failed.artifact is None
    assert not (host.dir / f"{failed.id}.lsn").exists()
    sql = host.statements()
    assert sql.count("SET GLOBAL wsrep_desync=ON") == 2 == sql.count("SET GLOBAL wsrep_desync=OFF")
    assert sql.index("SET GLOBAL wsrep_desync=OFF", sql.index("SET GLOBAL wsrep_desync=ON", 1)) > 0  # OFF after the 2nd ON


def test_a_stream_without_galera_info_is_a_failed_backup(tmp_path):
    """A backup a restore could not place (no uuid:seqno of this cluster in the stream) is said
    to have failed, not kept as good."""
    host = FakeHost(tmp_path, BACKUP_OK.replace(f"{UUID}:4242", "not-galera-info"))
    done = host.run("full")
    assert done.returncode != 0 and "carried no galera-info" in done.stderr, done.stderr
    (failed,) = host.manifests()
    assert failed.status == "failed" and "galera-info failed" in failed.error and failed.artifact is None
    assert not list(host.dir.glob("*.mbstream*"))


def test_the_script_refuses_in_maintenance_before_touching_anything(tmp_path):
    host = FakeHost(tmp_path, BACKUP_OK)
    (host.root / "maint").write_text("1\n")
    done = host.run("full")
    assert done.returncode == 1 and "node03 is in maintenance" in done.stderr
    assert not host.log.exists() and list(host.dir.iterdir()) == []


# --- preflight -----------------------------------------------------------------------------------------

G = "controllers"
PREFLIGHT = [
    ({"backup_node": "node01"}, r"backup_node \(node01\) is node01, the database writer"),
    ({"backup_node": "node07"}, r"node07 is not a controller"),
    ({"backup_copy_to": "node03"}, r"node03 is backup_node itself"),
    ({"backup_node": "node02", "backup_copy_to": "node02"}, r"node02 is backup_node itself"),
    ({"backup_dir": "/var/lib/mysql/backups"}, r"inside MariaDB's datadir"),
    ({"backup_copy_dir": "/var/lib/mysql"}, r"inside MariaDB's datadir"),
    ({"backup_incremental_calendar": "*-*-* 01:00:00"}, r"also backup_full_calendar"),
    ({"backup_full_calendar": "*-*-* 24:00:00"}, r"an hour outside 0-23"),
    ({"backup_full_calendar": "daily; rm -rf /"}, r"not a systemd OnCalendar"),
    ({"backup_copy_to": "host; id"}, r"not a controller's name or \[user@\]host"),
    ({"backup_retention_days": 0}, r"outside 1-3650"),
]


@pytest.mark.parametrize("changes,message", PREFLIGHT, ids=[str(c) for c, _ in PREFLIGHT])
def test_preflight_refuses(changes, message):
    h, g = site_with(**changes)
    errors = check(h, g, secrets=dict(FAKE_SECRETS)).errors
    key = next(iter(k for k in changes if k != "backup_node" or len(changes) == 1))
    assert [(p.where, p.key) for p in errors if re.search(message, p.message)] == [(G, key)], [str(p) for p in errors]
    assert all(p.fix for p in errors)


def test_preflight_with_the_defaults_on_and_off():
    h, g = site_with()
    assert check(h, g, secrets=dict(FAKE_SECRETS)).problems == []
    h, g = prod_data()
    g["backup_node"] = "node02"
    report = check(h, g, secrets=dict(FAKE_SECRETS))
    assert [(p.level, p.key) for p in report.problems] == [("warning", "backup_node")]
    assert "no effect while backup_enabled is False" in report.problems[0].message


def test_a_copy_target_like_a_controller_name_is_a_warning():
    h, g = site_with(backup_copy_to="node2")
    report = check(h, g, secrets=dict(FAKE_SECRETS))
    assert not report.errors and [p.key for p in report.warnings] == ["backup_copy_to"]
    assert "did you mean node02" in report.warnings[0].message


def test_the_resolved_values():
    names = ORDER
    d = build_site(*site_with()).data
    assert backup.node(names, d) == "node03" and backup.writer(names) == "node01"
    assert backup.copy_target(names, d) == backup.CopyTarget("controller", "node02", d["backup_dir"])
    assert backup.copy_target(names, {**d, "backup_copy_to": "node01"}).kind == "controller"
    assert backup.copy_target(names, {**d, "backup_copy_to": "b@h"}) == backup.CopyTarget("ssh", "b@h", d["backup_dir"])
