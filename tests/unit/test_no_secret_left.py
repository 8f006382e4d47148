"""What the facts leave and print (issue 24, item 3): the health report's keepalived state
leaves no dump (it holds the VRRP password) behind; the account facts print no password hash."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from unitkit import FAKE_SECRETS, netns, netns_sh, prod_data
import facts.keepalived as K
from config.files import managed_files
from config.site import build_site

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"


def test_the_keepalived_state_fact_reads_the_dump_and_leaves_none_behind():
    # A real keepalived 2.x on node01's rendered config, in a throwaway namespace with its own
    # /tmp and /run (the test's files outside both); systemctl answers "active" (no unit here).
    # The fact's own command runs.
    tmp_path = Path(tempfile.mkdtemp(prefix="ka-fact-", dir="/var/tmp"))
    try:
        check_no_dump_left(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def check_no_dump_left(tmp_path: Path) -> None:
    hosts, group = prod_data()
    conf = next(f.content for f in managed_files(build_site(hosts, group), "node01", FAKE_SECRETS) if f.path == KEEPALIVED_CONF)
    (tmp_path / "keepalived").mkdir()
    (tmp_path / "keepalived" / "keepalived.conf").write_text(conf)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\necho active\n")
    (tmp_path / "bin" / "systemctl").chmod(0o755)
    (tmp_path / "fact.sh").write_text(K.KeepalivedState().command())
    script = (
        f"mount --bind {tmp_path / 'keepalived'} /etc/keepalived && mount -t tmpfs none /tmp && mount -t tmpfs none /run && "
        "(keepalived -n -l -f /etc/keepalived/keepalived.conf >/dev/null 2>&1 & echo $! > /run/ka.pid) && "
        "for i in $(seq 50); do [ -s /run/keepalived.pid ] && break; sleep 0.1; done; sleep 0.5; "
        f"PATH={tmp_path / 'bin'}:$PATH sh {tmp_path / 'fact.sh'}; "
        "sleep 0.5; echo __left; ls -A /tmp; echo __grep; grep -rlF -- \"$VRRP\" /tmp /run; kill $(cat /run/ka.pid)"
    )
    with netns() as ns:
        proc = netns_sh(ns, f"VRRP={FAKE_SECRETS['vrrp_auth_pass']}; {script}")
    out, _, rest = proc.stdout.partition("__left\n")
    left, _, found = rest.partition("__grep\n")
    result = K.KeepalivedState().process(out.splitlines())
    assert result["error"] is None and result["vrrp_state"] in ("BACKUP", "MASTER", "FAULT"), (proc.stdout, proc.stderr)
    assert left.split() == [], left
    assert found.strip() == "", found
    assert FAKE_SECRETS["vrrp_auth_pass"] not in proc.stdout


def test_the_keepalived_dump_is_removed_also_when_the_read_is_cut():
    command = K.KeepalivedState().command()
    assert command.count(K.DUMP_CLEANUP) >= 3 and "trap " in command  # before, after, and on exit
    assert "/tmp/keepalived_parent.data" in K.DUMP_CLEANUP


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run with pytest")
