"""The restore rehearsal's decisions as tables (operations/rehearsal_plan.py): the backup
directory's manifests, the artifacts' sha256, the rehearsal hosts and the controllers in, the
plan (which backup, which chain and files, which host bootstraps, who joins, compared with
what) or the refusal out; preflight's refusal of a rehearsal host that is a controller; the
rehearsal's report lines (facts/backup_manifest.py rehearsal_lines); the lab inventory's
rehearsal nodes; the rehearsal cluster's rendered files.
"""

from __future__ import annotations

import re

import pytest

from test_backup_plan import FULL, INC1, INC2, OTHER, TABLES, UUID, art, meets, mf, shas
from unitkit import FAKE_SECRETS, prod_data
from config.preflight import check
from config.rehearsal import KEY, host_problems
from facts.backup_manifest import compare, rehearsal_lines, with_sums
from operations.rehearsal_plan import files_of, plan, source_of

CONTROLLERS = [("node01", "100.2.30.41"), ("node02", "100.2.30.42"), ("node03", "100.2.30.43")]
VIPS = ["100.2.30.40", None]
TWO = {"node08": "100.2.30.58", "node09": "100.2.30.59"}
THREE = {**TWO, "node07": "100.2.30.57"}
VERIFIED = mf("f5", tables=TABLES, hours_ago=3)
ON_VERIFIED = mf("i5", "incremental", "f5", hours_ago=2, verified=None)

# (case, manifests, target, sha256s, hosts, in_run, expected: fields, or a refusal's regex)
PLAN = [
    ("the latest verified full onto two hosts", [FULL, VERIFIED], None, shas(VERIFIED), TWO, set(TWO),
     {"backup": "f5", "chain": ("f5",), "bootstrap": "node08", "joiners": ("node09",), "reference": "manifest",
      "position": f"{UUID}:1000", "files": ("f5.manifest.json", "f5.mbstream.gz", "f5.mbstream.gz.sha256")}),
    ("a site's three hosts: two join, in their order", [VERIFIED], "f5", shas(VERIFIED), THREE, set(THREE),
     {"bootstrap": "node08", "joiners": ("node09", "node07")}),
    ("one host: restored, no SST rehearsed (said)", [VERIFIED], "f5", shas(VERIFIED), {"node08": "100.2.30.58"}, {"node08"},
     {"bootstrap": "node08", "joiners": (), "notes": r"one rehearsal host \(node08\).*no state transfer"}),
    ("a named incremental: its chain in order, compared with the bootstrapped host", [VERIFIED, ON_VERIFIED], "i5",
     shas(VERIFIED, ON_VERIFIED), TWO, set(TWO),
     {"chain": ("f5", "i5"), "reference": "node08", "notes": r"i5 is an incremental: its manifest holds no table sums",
      "files": ("f5.manifest.json", "f5.mbstream.gz", "f5.mbstream.gz.sha256",
                "i5.manifest.json", "i5.mbstream.gz", "i5.mbstream.gz.sha256")}),
    ("the latest is an incremental on a chain of two", [FULL, INC1, INC2], None, shas(FULL, INC1, INC2), TWO, set(TWO),
     {"chain": ("f1", "i1", "i2"), "backup": "i2", "reference": "node08", "notes": r"i2 is an incremental"}),
    # --- refusals ---
    ("no rehearsal hosts", [VERIFIED], None, shas(VERIFIED), {}, set(),
     rf"{KEY} is empty: name the rehearsal hosts"),
    ("a rehearsal host named like a controller", [VERIFIED], None, shas(VERIFIED), {"node03": "100.2.30.58"}, {"node03"},
     rf"{KEY}\.node03: node03 is the name of controller node03: a rehearsal never restores onto the production cluster: name a host that is not a controller"),
    ("a rehearsal host at a controller's address", [VERIFIED], None, shas(VERIFIED), {"node08": "100.2.30.42"}, {"node08"},
     rf"{KEY}\.node08: node08's address 100\.2\.30\.42 is controller node02's"),
    ("a rehearsal host at the VIP", [VERIFIED], None, shas(VERIFIED), {"node08": "100.2.30.40"}, {"node08"},
     rf"{KEY}\.node08: node08's address 100\.2\.30\.40 is the site's VIP"),
    ("two rehearsal hosts at one address", [VERIFIED], None, shas(VERIFIED), {"node08": "100.2.30.58", "node09": "100.2.30.58"},
     set(TWO), r"node09's address 100\.2\.30\.58 is also node08's"),
    ("a rehearsal host not in the run", [VERIFIED], None, shas(VERIFIED), TWO, {"node08"},
     r"rehearsal host\(s\) node09 not in this run.*python -m lab add node08 node09"),
    ("a flipped byte in the artifact", [VERIFIED], "f5", {"f5": "0" * 64}, TWO, set(TWO),
     r"f5: sha256 of f5\.mbstream\.gz is 000000000000\.\.\..*changed"),
    ("an artifact missing on the source", [VERIFIED], "f5", {}, TWO, set(TWO), r"f5: artifact f5\.mbstream\.gz not found"),
    ("a broken incremental chain", [INC1, INC2], "i2", shas(INC1, INC2), TWO, set(TWO),
     r"broken incremental chain: i1 applies on f1, which is not among"),
    ("a backup without galera-info", [mf("f0", uuid=None, tables=TABLES)], "f0", {"f0": art("f0")}, TWO, set(TWO),
     r"f0 was taken without galera-info"),
    ("a full that failed its verification", [mf("f0", verified=False, note="mariadbd did not start")], "f0",
     {"f0": art("f0")}, TWO, set(TWO), r"f0 failed its verification"),
    ("a full not verified yet: nothing to compare with", [mf("f0", verified=None)], "f0", {"f0": art("f0")}, TWO, set(TWO),
     r"f0 has no table sums in its manifest \(not verified yet\): run openstack-ha-backup-verify"),
    ("no such backup", [VERIFIED], "nope", shas(VERIFIED), TWO, set(TWO), r"no backup named nope"),
    ("no backup at all", [], None, {}, TWO, set(TWO), r"no good backup"),
]


@pytest.mark.parametrize("case,manifests,target,sums,hosts,in_run,expected", PLAN, ids=[c[0] for c in PLAN])
def test_plan(case, manifests, target, sums, hosts, in_run, expected):
    meets(plan(manifests, target, sums, hosts, in_run, CONTROLLERS, VIPS, "node03", "/var/backups/x"), expected)


def test_a_refusal_says_the_broken_manifests_of_the_source():
    got = plan([], None, {}, TWO, set(TWO), CONTROLLERS, VIPS, "node03", "/b", broken=("x.manifest.json: kind missing",))
    assert "1 manifest(s) in /b on node03 could not be read: x.manifest.json: kind missing" in got.refusals[-1]


def test_a_backup_of_another_cluster_is_rehearsed_the_controllers_are_not_read():
    """The rehearsal never reads the controllers' Galera state: the backup's cluster is not
    checked (a rehearsal of a backup of another site is still a rehearsal)."""
    meets(plan([mf("f9", uuid=OTHER, tables=TABLES)], "f9", {"f9": art("f9")}, TWO, set(TWO), CONTROLLERS, VIPS,
               "node03", "/b"), {"position": f"{OTHER}:1000"})


# --- where the backup is read: (from, copy kind, expected source or refusal) ------------------------

@pytest.mark.parametrize("source,kind,expected", [
    ("node", "controller", ("node03", "/b", None)),
    ("copy", "controller", ("node02", "/c", None)),
    ("copy", "ssh", r"the copy is on backup@vault, an SSH host outside the inventory.*rehearse from=node \(node03\)"),
    ("elsewhere", "controller", r"from=elsewhere: say from=node \(the backup node node03\) or from=copy \(its copy on"),
], ids=["node", "copy on a controller", "copy on an SSH host", "unknown"])
def test_source(source, kind, expected):
    got = source_of(source, "node03", kind, "node02" if kind == "controller" else "backup@vault", "/b", "/c")
    if isinstance(expected, tuple):
        assert got == expected
    else:
        assert got[:2] == (None, None) and re.search(expected, got[2]), got


def test_the_files_of_a_chain_are_each_links_manifest_artifact_and_sum():
    assert files_of((FULL, INC1)) == ("f1.manifest.json", "f1.mbstream.gz", "f1.mbstream.gz.sha256",
                                      "i1.manifest.json", "i1.mbstream.gz", "i1.mbstream.gz.sha256")


# --- preflight: the same host rule, before anything connects ------------------------------------------

def preflight(hosts_value, enabled=True):
    h, g = prod_data()
    g.update({"backup_enabled": enabled, KEY: hosts_value})
    return check(h, g, FAKE_SECRETS)


@pytest.mark.parametrize("value,where,said", [
    ({"node02": "100.2.30.58"}, f"{KEY}.node02", "node02 is the name of controller node02"),
    ({"spare1": "100.2.30.41"}, f"{KEY}.spare1", "spare1's address 100.2.30.41 is controller node01's"),
    ({"spare1": "100.2.30.40"}, f"{KEY}.spare1", "is the site's VIP"),
    ({"spare1": "100.2.30.58", "spare2": "100.2.30.58"}, f"{KEY}.spare2", "is also spare1's"),
], ids=["controller name", "controller address", "VIP", "two at one address"])
def test_preflight_refuses_a_rehearsal_host_that_could_touch_the_cluster(value, where, said):
    errors = [p for p in preflight(value).errors if p.key == where]
    assert errors and said in errors[0].message, preflight(value).errors
    assert "name a host that is not a controller" in errors[0].fix or "its own address" in errors[0].fix


def test_preflight_takes_spare_hosts_and_refuses_a_malformed_value():
    assert not [p for p in preflight({"spare1": "100.2.30.58", "spare2": "100.2.30.59"}).errors if KEY in p.key]
    assert [p for p in preflight({"Spare!": "100.2.30.58"}).errors if p.key.startswith(KEY)]
    assert [p for p in preflight({"spare1": "not-an-address"}).errors if p.key.startswith(KEY)]
    off = preflight({"spare1": "100.2.30.58"}, enabled=False)
    assert any(p.key == KEY and "no effect while backup_enabled is False" in p.message for p in off.warnings)


def test_host_problems_is_empty_for_spare_hosts():
    assert host_problems(TWO, CONTROLLERS, VIPS) == []


# --- the report: each host's verdict, then the last line -------------------------------------------

def test_every_host_matching_ends_with_the_count_and_the_match():
    m = mf("f5", tables=TABLES)
    lines = rehearsal_lines("f5", {"node08": compare(m, TABLES), "node09": compare(m, TABLES)})
    assert lines == [
        "node08: compared 2 tables, 13 rows: the checksums match",
        "node09: compared 2 tables, 13 rows: the checksums match",
        "restore-rehearsal of f5: compared 2 tables, 13 rows on each of 2 restored host(s) (node08, node09) "
        "against the manifest: the checksums match",
    ]


def test_a_difference_on_one_host_is_a_table_and_the_last_line_says_where():
    m = mf("f5", tables=TABLES)
    bad = {**TABLES, "nova.instances": {"rows": 9, "checksum": "zz"}}
    lines = rehearsal_lines("f5", {"node08": compare(m, TABLES), "node09": compare(m, bad)})
    assert lines[1].split()[:3] == ["node09:", "table", "what"]
    assert lines[-1].endswith("2 difference(s) on node09: the restored database is not the backup's"), lines


def test_a_host_not_summed_fails_the_verdict():
    m = mf("f5", tables=TABLES)
    last = rehearsal_lines("f5", {"node08": compare(m, TABLES)}, ["node09"])[-1]
    assert "2 restored host(s) (node08, node09)" in last and last.endswith("node09 not summed: the restored database is not the backup's")
    assert rehearsal_lines("f5", {}, ["node08"])[-1].endswith("node08 not summed; no host summed: the restored database is not the backup's")


def test_an_incremental_is_compared_with_the_bootstrapped_host():
    ref = with_sums(mf("i5", "incremental", "f5", verified=None), TABLES)
    assert ref.table_sums()["nova.instances"].rows == 10 and ref.id == "i5"
    last = rehearsal_lines("i5", {"node08": compare(ref, TABLES), "node09": compare(ref, TABLES)}, reference="node08")[-1]
    assert "against node08 (the manifest holds no table sums): the checksums match" in last


# --- the lab names its rehearsal nodes, never as controllers ----------------------------------------

def test_the_lab_rehearsal_nodes_are_not_controllers():
    from lab.names import REHEARSAL_NODES, address
    from config.rehearsal import host_problems as problems
    assert len(REHEARSAL_NODES) == 2
    assert not problems({n: address(n) for n in REHEARSAL_NODES},
                        [(f"node0{k}", address(f"node0{k}")) for k in range(1, 8)], [])


# --- the rehearsal cluster's files: the galera component's, rendered for the rehearsal hosts -------

def rehearsal_of_prod():
    from config.site import build_site
    from operations.rehearsal import rehearsal_site
    h, g = prod_data()
    g.update({"backup_enabled": True, KEY: TWO})
    return rehearsal_site(build_site(h, g))


def test_the_galera_files_name_only_the_rehearsal_hosts_under_a_cluster_name_of_their_own():
    from config.files import managed_files
    from config.paths import GALERA_CNF
    rs = rehearsal_of_prod()
    cnf = next(f.content for f in managed_files(rs, "node09", FAKE_SECRETS, "galera") if f.path == GALERA_CNF)
    assert "100.2.30.58" in cnf and "wsrep_node_address = 100.2.30.59" in cnf, cnf
    assert not any(a in cnf for _, a in CONTROLLERS), "a controller's address in the rehearsal cluster's config"
    assert re.search(r"^wsrep_cluster_name = \S+-rehearsal$", cnf, re.M), cnf


def test_the_restore_tools_render_for_the_rehearsal_hosts_and_pass_bash_n(tmp_path):
    import subprocess
    from config import backup
    from config.files import render_backup_tool
    rs = rehearsal_of_prod()
    for path in (backup.PREPARE, backup.RESTORE):
        text = render_backup_tool(rs, path)
        assert f"DIR={rs['backup_dir']}" in text
        (tmp_path / "t").write_text(text)
        assert subprocess.run(["bash", "-n", str(tmp_path / "t")]).returncode == 0, path


def test_the_rehearsal_inventory_adds_the_hosts_as_a_group_of_their_own(tmp_path, monkeypatch):
    """inventories/rehearsal.py: the site's controllers as they are, and the group `rehearsal`
    reached at the hosts' addresses with the controllers' ssh settings."""
    import json
    from pathlib import Path
    from config.site import load_groups
    h, g = prod_data()
    g.update({"backup_enabled": True, KEY: TWO, "ssh_user": "root"})
    site = tmp_path / "site.py"
    site.write_text(f"controllers = ({json.dumps(h)}, {json.dumps(g)})\n".replace("true", "True").replace("false", "False").replace("null", "None"))
    monkeypatch.setenv("HA_REHEARSAL_SITE", str(site))
    hosts, data, others = load_groups(Path(__file__).resolve().parents[2] / "inventories" / "rehearsal.py")
    assert [n for n, _ in hosts] == ["node01", "node02", "node03"] and data[KEY] == TWO
    assert others["rehearsal"][0] == [("node08", {"ssh_hostname": "100.2.30.58", "ssh_user": "root",
                                                  **{k: v for k, v in g.items() if k.startswith("ssh_")}}),
                                      ("node09", {"ssh_hostname": "100.2.30.59", "ssh_user": "root",
                                                  **{k: v for k, v in g.items() if k.startswith("ssh_")}})]
    # any entry but rehearsal.py refuses the group: deploy.py would run on the rehearsal hosts
    errors = check(hosts, data, FAKE_SECRETS, others=others).errors
    assert any(p.where == "rehearsal" and "not in `controllers`" in p.message for p in errors), errors


def test_the_lab_inventory_never_lists_a_rehearsal_node_as_a_controller():
    """While node08 and node09 exist (a rehearsal runs), inventories/lab.py's controllers are the
    others; the rehearsal nodes are its backup_rehearsal_hosts, and preflight takes them."""
    from unitkit import lab_data
    from lab.names import REHEARSAL_NODES, address
    hosts, group = lab_data(("node01", "node02", "node03", *REHEARSAL_NODES))
    assert [n for n, _ in hosts] == ["node01", "node02", "node03"]
    assert group[KEY] == {n: address(n) for n in REHEARSAL_NODES}
    assert not [str(p) for p in check(hosts, group, FAKE_SECRETS).errors]


def test_broken_manifests_are_said_only_with_a_refusal():
    """A broken manifest elsewhere in the directory does not stop the rehearsal of a good backup."""
    got = plan([VERIFIED], "f5", shas(VERIFIED), TWO, set(TWO), CONTROLLERS, VIPS, "node03", "/b",
               broken=("x.manifest.json: kind missing",))
    assert got.allowed and got.refusals == (), got.refusals


def test_an_address_that_is_not_an_ip_is_compared_as_written():
    assert host_problems({"spare": "db.example"}, [("node01", "db.example")], [])[0][1] == \
        "spare's address db.example is controller node01's: a rehearsal never restores onto the production cluster"
    assert host_problems({"spare": "db2.example"}, [("node01", "db.example")], []) == []
