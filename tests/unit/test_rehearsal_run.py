"""rehearsal.py's run() planned offline (tests/unit/opkit.py: pyinfra's real state and
inventory, facts from the case, nothing connected): the lab's three controllers and its two
rehearsal nodes as inventories/rehearsal.py makes them. The controllers are only read (the
source downloads; nothing else runs on any controller); the rehearsal hosts get the galera
component's packages and files, the restore, the bootstrap, the join, the sums; a refusal comes
before any change.
"""

from __future__ import annotations

import re
import subprocess
import tempfile

import pytest

import opkit
from test_backup_plan import TABLES, mf
from config import backup
from facts.backup_manifest import to_dict
from lab.names import REHEARSAL_NODES, address

UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
F = mf("f5", tables=TABLES, hours_ago=3)
ORDER = ["node01", "node02", "node03"]
A, B = REHEARSAL_NODES


def facts(sha=None, manifests=(F,)):
    return {"node03": {"BackupManifests": {"manifests": [to_dict(m) for m in manifests], "broken": [], "elapses": [], "error": None},
                       "BackupArtifactSums": {"sums": {"f5.mbstream.gz": sha or F.sha256}, "error": None}}}


def planned(facts: dict, override: dict, hosts=None) -> dict[str, list]:
    rehearsal = {n: address(n) for n in REHEARSAL_NODES} if hosts is None else hosts
    case = {"nodes": ORDER, "data": {"backup_enabled": True, "backup_rehearsal_hosts": rehearsal},
            "rehearsal_group": True, "components": [], "override": override, "facts": facts}
    with opkit.planning(case) as (state, inventory):
        from operations import common
        from operations import rehearsal as entry

        common.allow_group("rehearsal")
        for h in inventory:
            with opkit.ctx_host.use(h):
                entry.run()
        return opkit.planned(state, inventory, "Restore rehearsal | ")


def test_the_controllers_are_only_read_the_rehearsal_hosts_restore_bootstrap_join_and_sum():
    got = planned(facts(), {"backup": "f5"})
    ops = {n: [op for op, _ in rows] for n, rows in got.items()}
    assert ops["node01"] == ops["node02"] == []
    assert ops["node03"] == ["rehearsal: f5 read from node03 (only read)"]
    downloads = got["node03"][0][1]
    assert downloads[0].startswith("FunctionCommand(_make_staging") and [
        re.sub(r"/restore-rehearsal-\d+/", "/STAGING/", c) for c in downloads[1:]] == [
        f"FileDownloadCommand(/var/backups/openstack-ha/mariadb/{f}, {tempfile.gettempdir()}/STAGING/{f})"
        for f in ("f5.manifest.json", "f5.mbstream.gz", "f5.mbstream.gz.sha256")], downloads
    assert ops[A] == [
        "rehearsal: MariaDB and Galera installed",
        "rehearsal: mariadb stopped, its socket units disabled",
        "rehearsal: the galera component's files, rendered for the rehearsal cluster",
        "rehearsal: the backup's restore tools",
        f"rehearsal: f5 copied to {A}",
        f"rehearsal: f5 prepared and restored on {A} (openstack-ha-restore)",
        f"rehearsal: bootstrap {A} from the restored data",
        "rehearsal: the state transfer account",
        "rehearsal: the restored tables summed",
        "rehearsal: compared with the manifest",
    ]
    assert ops[B] == [
        "rehearsal: MariaDB and Galera installed",
        "rehearsal: mariadb stopped, its socket units disabled",
        "rehearsal: the galera component's files, rendered for the rehearsal cluster",
        "rehearsal: the backup's restore tools",
        f"rehearsal: {B} joins by SST, waiting for Synced",
        "rehearsal: the restored tables summed",
    ]
    rows = dict(got[A])
    assert rows[f"rehearsal: f5 prepared and restored on {A} (openstack-ha-restore)"] == [f"{backup.RESTORE} f5"]
    boot = rows[f"rehearsal: bootstrap {A} from the restored data"][0]
    assert "galera_new_cluster" in boot and f"{UUID}:1000" in boot and address(B) in boot
    uploads = rows[f"rehearsal: f5 copied to {A}"]
    assert [c for c in uploads if c.startswith("upload ")] == [
        f"upload /var/backups/openstack-ha/mariadb/{f}" for f in ("f5.manifest.json", "f5.mbstream.gz", "f5.mbstream.gz.sha256")]
    files = rows["rehearsal: the galera component's files, rendered for the rehearsal cluster"]
    assert any(c.startswith("upload /etc/mysql/mariadb.conf.d/") for c in files)
    join = dict(got[B])[f"rehearsal: {B} joins by SST, waiting for Synced"]
    assert join[1].startswith("timeout 600 systemctl restart mariadb")
    # every shell command parses (bash -n)
    for n in (A, B):
        for op, cmds in got[n]:
            for c in cmds:
                if not c.startswith(("upload ", "FunctionCommand(")):
                    done = subprocess.run(["bash", "-n", "-c", c], capture_output=True, text=True)
                    assert done.returncode == 0, (n, op, c[:200], done.stderr)
    # nothing with a controller's address runs on a rehearsal host (the cluster is its own)
    every = " ".join(c for n in (A, B) for _, cmds in got[n] for c in cmds)
    assert not any(re.search(rf"(?<![0-9.]){re.escape(address(c))}(?![0-9])", every) for c in ORDER)


@pytest.mark.parametrize("facts_, override, hosts, said", [
    (facts(sha="1" * 64), {"backup": "f5"}, None, r"f5: sha256 of f5\.mbstream\.gz is 111111111111"),
    (facts(), {"backup": "nope"}, None, r"no backup named nope"),
    (facts(), {"backup": "f5", "from": "elsewhere"}, None, r"from=elsewhere: say from=node"),
    (facts(), {"backup": "f5"}, {}, r"backup_rehearsal_hosts is empty"),
], ids=["sha256", "no such backup", "unknown source", "no hosts"])
def test_a_refusal_comes_before_any_change(facts_, override, hosts, said):
    from operations.common import Refused

    with pytest.raises(Refused) as refused:
        planned(facts_, override, hosts)
    assert re.search(said, refused.value.message), refused.value.message
    assert "nothing was changed" in refused.value.message or "from=" in refused.value.message


def test_a_named_incremental_uploads_its_chain_and_one_host_rehearses_without_a_join():
    inc = mf("i5", "incremental", "f5", hours_ago=2, verified=None)
    f = facts(manifests=(F, inc))
    f["node03"]["BackupArtifactSums"]["sums"]["i5.mbstream.gz"] = inc.sha256
    got = planned(f, {"backup": "i5"}, {A: address(A)})
    rows = dict(got[A])
    assert [c for c in rows[f"rehearsal: i5 copied to {A}"] if c.startswith("upload ")] == [
        f"upload /var/backups/openstack-ha/mariadb/{x}" for x in (
            "f5.manifest.json", "f5.mbstream.gz", "f5.mbstream.gz.sha256",
            "i5.manifest.json", "i5.mbstream.gz", "i5.mbstream.gz.sha256")]
    assert rows[f"rehearsal: i5 prepared and restored on {A} (openstack-ha-restore)"] == [f"{backup.RESTORE} i5"]
    assert not any("joins by SST" in op for op, _ in got[A]) and B not in got


@pytest.mark.parametrize("sums, ok, last", [
    ({A: TABLES, B: TABLES}, True, r"compared 2 tables, 13 rows on each of 2 restored host\(s\) \(node08, node09\) "
                                   r"against the manifest: the checksums match$"),
    ({A: TABLES, B: {**TABLES, "nova.instances": {"rows": 9, "checksum": "zz"}}}, False,
     r"2 difference\(s\) on node09: the restored database is not the backup's$"),
    ({A: TABLES}, False, r"node09 not summed: the restored database is not the backup's$"),
], ids=["equal", "a difference", "a host not summed"])
def test_the_verdict_is_judged_here_and_written_last(tmp_path, sums, ok, last):
    """The judge (a FunctionCommand, run on this machine when the run executes): the report file
    make prints last, and the step's outcome (False fails the run)."""
    report = tmp_path / "out" / "restore-rehearsal.txt"
    rehearsal = {n: address(n) for n in REHEARSAL_NODES}
    case = {"nodes": ORDER, "data": {"backup_enabled": True, "backup_rehearsal_hosts": rehearsal},
            "rehearsal_group": True, "components": [], "override": {"backup": "f5", "report": str(report)},
            "facts": facts()}
    with opkit.planning(case) as (state, inventory):
        from operations import common
        from operations import rehearsal as entry
        from operations.runstate import run_dict

        common.allow_group("rehearsal")
        for h in inventory:
            with opkit.ctx_host.use(h):
                entry.run()
        run_dict("rehearsal sums").update(sums)
        h = inventory.get_host(A)
        with opkit.ctx_host.use(h):
            (judge,) = [c for op_hash in state.get_op_order() if op_hash in state.ops[h]
                        and state.get_op_meta(op_hash).names == {"Restore rehearsal | rehearsal: compared with the manifest"}
                        for c in state.get_op_data_for_host(h, op_hash).command_generator()]
            assert judge.function(*judge.args, **judge.kwargs) is ok
    lines = report.read_text().splitlines()
    assert re.search(last, lines[-1]) and lines[-1].startswith("restore-rehearsal of f5: "), lines


def test_no_secret_in_any_operation_argument_or_name():
    """pyinfra prints an operation's arguments when it names the operation itself: every step of
    the rehearsal is named (no argument attached), and none of its arguments carries a secret or
    a file anyway (the files are rendered inside the operation, uploaded through a 0600 file)."""
    from unitkit import FAKE_SECRETS

    rehearsal = {n: address(n) for n in REHEARSAL_NODES}
    case = {"nodes": ORDER, "data": {"backup_enabled": True, "backup_rehearsal_hosts": rehearsal},
            "rehearsal_group": True, "components": [], "override": {"backup": "f5"}, "facts": facts()}
    with opkit.planning(case) as (state, inventory):
        from operations import common
        from operations import rehearsal as entry

        common.allow_group("rehearsal")
        for h in inventory:
            with opkit.ctx_host.use(h):
                entry.run()
        metas = [state.get_op_meta(op_hash) for op_hash in state.get_op_order()]
    assert metas and all(not m.args for m in metas), [m.args for m in metas if m.args]
    names = " ".join(n for m in metas for n in m.names)
    assert not [n for n, v in FAKE_SECRETS.items() if len(v) > 4 and v in names]
