"""facts.host's FileStates and ServiceStates read each controller's files and units with a
constant number of processes (they forked three per path and three per unit: most of the
remote CPU of a no-op run). Their answers must stay byte for byte those of the former
per-path/per-unit commands (per_path_command here, ServiceStates.per_unit_command, which is also its fallback), so process() and
every recorded capture hold (but a missing unit under a systemd that also prints "not-found" on
stdout: there the per-unit line broke in two, the `show` line does not): both are run here, under dash, on every awkward case, and
compared. No systemd here: a fake `systemctl` on PATH answers is-active, is-enabled and show
from one table, as systemd 252 does, and logs its runs (the fork count)."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import tempfile
import textwrap

import pytest

import facts.host
from facts.host import FileStates, ServiceStates

SH = shutil.which("dash") or "sh"


def per_path_command(paths):
    """FileStates' former command, three processes per path: the reference its command is held
    to, byte for byte."""
    return "; ".join(
        f"if [ -e {shlex.quote(p)} ]; then echo \"F $(stat -c '%U %G %a' {shlex.quote(p)}) "
        f"$(sha1sum {shlex.quote(p)} | cut -d' ' -f1) \"{shlex.quote(p)}; else echo M {shlex.quote(p)}; fi"
        for p in paths
    )


def run(command, env=None, user=()):
    return subprocess.run([*user, SH, "-c", command], capture_output=True, stdin=subprocess.DEVNULL,
                          env=env, timeout=60).stdout


@pytest.fixture
def tree():
    """Under a directory anyone may search (pytest's tmp_path is root's only): the test as
    another user reaches the files."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="filestates-"))
    base.chmod(0o755)
    d = base / "t"
    d.mkdir()
    (d / "a").write_text("hi\n")
    (d / "empty").write_text("")
    (d / "dir").mkdir()
    (d / "link").symlink_to("a")
    (d / "dangling").symlink_to("nowhere")
    (d / "sp ace").write_text("x")
    (d / "quo'te").write_text("y")
    (d / 'dq"x').write_text("q")
    (d / "back\\slash").write_text("z")  # sha1sum escapes its line: `\<sha>`, dash's echo reads `\a` ...
    (d / "new\nline").write_text("w")
    (d / "%U $(x) *").write_text("p")
    (d / "secret").write_text("s")
    (d / "secret").chmod(0)
    d.chmod(0o755)
    (base / "closed").mkdir(mode=0o700)
    (base / "closed" / "f").write_text("c")
    names = sorted(os.listdir(d)) + ["missing", ""]
    yield [str(d / n) for n in names] + [
        "/dev/null", "/dev/./null", "/nonexistent/x", str(d / "a"), str(d / "dir") + "/", str(d / "missing"),
        str(base / "closed" / "f")]
    shutil.rmtree(base)


def test_file_states_answers_as_the_per_path_command(tree):
    old, new = run(per_path_command(tree)), run(FileStates().command(tree))
    assert new == old
    lines = FileStates().process(new.decode().splitlines())["files"]
    assert lines[tree[0]]["sha1"] and lines[next(p for p in tree if p.endswith("dangling"))] is None


def test_file_states_as_another_user(tree):
    """Unreadable files (no checksum), paths it may not search: run as nobody when possible."""
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # make test runs as root (CI installs with apt); setpriv is Debian's util-linux (essential)
    assert os.geteuid() == 0 and shutil.which("setpriv"), "run the unit tier as root, with setpriv (util-linux) on PATH"
    old = run(per_path_command(tree), user=user)
    assert run(FileStates().command(tree), user=user) == old
    assert b"F root root 0  " in old  # the unreadable file: no checksum, as before
    assert old.endswith(b"/closed/f\n") and b"\nM " in old  # a directory it may not search: missing


def test_file_states_forks_a_constant_number(tree, tmp_path):
    """A logging `stat` and `sha1sum` on PATH: one run each, whatever the number of paths."""
    env, log = fakes(tmp_path, {"stat": "stat", "sha1sum": "sha1sum"})
    assert run(FileStates().command(tree * 3), env=env) == run(per_path_command(tree * 3))
    assert sorted(log.read_text().split()) == ["sha1sum", "stat"]


def test_file_states_when_the_one_stat_fails(tree, tmp_path):
    """A path gone between the test and the one `stat` (its exit status non-zero): each path's
    own `stat`, as before."""
    env, _ = fakes(tmp_path, {"stat": "stat"}, fail_many="stat")
    assert run(FileStates().command(tree), env=env) == run(per_path_command(tree))


def test_file_states_sentinel_is_no_path_given():
    command = FileStates().command(["/dev/./null", "/dev/././null"])
    assert "/dev/./././null" in command
    assert run(command) == run(per_path_command(["/dev/./null", "/dev/././null"]))
    assert FileStates().command([]) == per_path_command([]) == ""


def fakes(tmp_path, wrapped, fail_many=None):
    """Logging wrappers of real commands, first on PATH."""
    bin_dir, log = tmp_path / "bin", tmp_path / "forks.log"
    bin_dir.mkdir(exist_ok=True)
    for name, real in wrapped.items():
        fail = f'[ $# -gt 4 ] && exit 1\n' if name == fail_many else ""
        (bin_dir / name).write_text(f'#!/bin/sh\necho {name} >> {log}\n{fail}exec {shutil.which(real)} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


# name (as asked) -> (Id, LoadState, ActiveState, UnitFileState); is-enabled answers from it
UNITS = {
    "haproxy.service": ("haproxy.service", "loaded", "active", "enabled"),
    "keepalived.service": ("keepalived.service", "not-found", "inactive", ""),
    "memcached.service": ("memcached.service", "loaded", "failed", "disabled"),
    "mariadb.service": ("mariadb.service", "masked", "inactive", "masked"),
    "mysql.service": ("mariadb.service", "loaded", "active", "enabled"),  # an alias: is-enabled says "alias"
    "epmd.socket": ("epmd.socket", "loaded", "active", "static"),
    "openstack-ha-metrics.timer": ("openstack-ha-metrics.timer", "loaded", "activating", "enabled-runtime"),
    "getty@tty1.service": ("getty@tty1.service", "loaded", "active", "indirect"),
    "prometheus.service": ("prometheus.service", "loaded", "reloading", "generated"),
    "run-x.service": ("run-x.service", "loaded", "active", "transient"),  # is-enabled exits 1 on it
    "rabbitmq-server.service": ("rabbitmq-server.service", "loaded", "deactivating", "enabled"),
}
ENABLED = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"}  # systemctl-is-enabled.c

FAKE_SYSTEMCTL = textwrap.dedent('''\
    #!{python}
    import json, os, sys
    open(os.environ["FAKE_LOG"], "a").write("systemctl " + sys.argv[1] + "\\n")
    units = json.loads(os.environ["FAKE_UNITS"])
    def name(u): return u if "." in u else u + ".service"
    verb, args = sys.argv[1], [a for a in sys.argv[2:] if a != "--"]
    if verb == "is-active":
        u = units.get(name(args[0]))
        state = u[2] if u else "inactive"
        print(state); sys.exit(0 if state == "active" else 3)
    if verb == "is-enabled":
        u = units.get(name(args[0]))
        if not u or u[1] == "not-found":
            if os.environ.get("FAKE_NOT_FOUND_STDOUT"): print("not-found")
            print("Failed to get unit file state for %s: No such file or directory" % name(args[0]), file=sys.stderr)
            sys.exit(1)
        state = "alias" if u[0] != name(args[0]) else u[3]
        print(state); sys.exit(0 if state in {enabled} else 1)
    if verb == "show":
        if os.environ.get("FAKE_SHOW_FAILS"): sys.exit(1)
        args = args[2:]  # -p list
        for i, a in enumerate(args):
            u = units.get(name(a)) or (name(a), "not-found", "inactive", "")
            if i: print()
            print("Id=%s\\nUnitFileState=%s\\nLoadState=%s\\nActiveState=%s" % (u[0], u[3], u[1], u[2]))
        sys.exit(0)
    sys.exit(2)
''')


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "sbin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL.format(python=shutil.which("python3"), enabled=sorted(ENABLED)))
    fake.chmod(0o755)
    pending = tmp_path / "pending"
    pending.mkdir()
    for marker in ("haproxy", "memcached", "keepalived", "epmd.socket", "daemon-reload.haproxy"):
        (pending / marker).touch()
    monkeypatch.setattr(facts.host, "PENDING_DIR", str(pending))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "FAKE_UNITS": json.dumps(UNITS)}
    return env, log


ASKED = ["haproxy", "keepalived", "memcached", "mariadb", "mysql", "epmd.socket", "openstack-ha-metrics.timer",
         "getty@tty1", "prometheus", "run-x", "rabbitmq-server", "nonexistent", "nonexistent.timer"]


@pytest.mark.parametrize("variant", [{}, {"FAKE_NOT_FOUND_STDOUT": "1"}, {"FAKE_SHOW_FAILS": "1"}])
def test_service_states_answers_as_the_per_unit_command(systemctl, variant):
    env, _ = systemctl
    env = {**env, **variant}
    old = run(ServiceStates.per_unit_command(ASKED), env=env)
    new = run(ServiceStates().command(ASKED), env=env)
    if variant.get("FAKE_NOT_FOUND_STDOUT"):
        # the per-unit line of a missing unit breaks in two there ("... not-found" and
        # "not-found pending": its pending marker was lost); the `show` line is whole
        assert new != old and new == old.replace(b"not-found\nnot-found", b"not-found")
    else:
        assert new == old
    got = ServiceStates().process(new.decode().splitlines())
    assert got["units"]["keepalived"] == {"active": "inactive", "enabled": "not-found", "pending": True}
    assert got["units"]["nonexistent"] == {"active": "inactive", "enabled": "not-found", "pending": False}
    assert got["units"]["haproxy"] == {"active": "active", "enabled": "enabled", "pending": True}
    assert got["reloads"] == ["haproxy"]


def test_service_states_forks_a_constant_number(systemctl):
    """Units is-enabled exits 0 on (a deployed site: all of them) and missing units cost one
    `systemctl show`; the others are still asked one by one."""
    env, log = systemctl
    fast = ["haproxy", "epmd.socket", "openstack-ha-metrics.timer", "getty@tty1", "prometheus",
            "rabbitmq-server"] * 3
    assert run(ServiceStates().command(fast), env=env) == run(ServiceStates.per_unit_command(fast), env=env)
    calls = log.read_text().splitlines()
    assert calls.count("systemctl show") == 1 and len(calls) == 1 + 2 * len(fast)  # the new one, then the old
    log.write_text("")
    run(ServiceStates().command(ASKED), env=env)
    slow = {"memcached", "mariadb", "mysql", "run-x"}  # a missing unit is read from `show` too
    assert len(log.read_text().splitlines()) == 1 + 2 * len(slow)


def test_service_states_without_units_is_the_reloads_line(systemctl):
    env, _ = systemctl
    assert ServiceStates().command(()) == ServiceStates.per_unit_command(())
    assert run(ServiceStates().command(()), env=env) == b"daemon-reload: haproxy \n"


# --- PeerReach: every probe in one bash under one timeout ----------------------------------------


@pytest.mark.netns
def test_peer_reach_says_open_refused_and_none_from_one_timeout():
    """In a network namespace: a port that listens (open), one that does not (refused), and an
    address on a link nobody answers (its connect waits for ARP beyond the timeout: the group is
    ended and the probe said none, as the timeout of one probe said it)."""
    from unitkit import netns, netns_sh

    from facts.host import PeerReach

    command = PeerReach().command(["127.0.0.1", "10.99.0.2"], [4567, 4568], timeout=1)
    assert command.count("timeout ") == 1 and command.count("bash -c") == 1
    listener = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 4567)); s.listen(); time.sleep(30)"
    with netns("kat-reach") as ns:
        run = netns_sh(ns, f"ip link set lo up; ip addr add 10.99.0.1/24 dev kat-reach; "
                           f"python3 -c {shlex.quote(listener)} & l=$!; sleep 0.5; "
                           f"{command}; kill $l")
    got = PeerReach().process(run.stdout.splitlines())
    assert got == {"reach": {"127.0.0.1": {4567: "open", 4568: "refused"}, "10.99.0.2": {4567: "none", 4568: "none"}},
                   "error": None}, run.stdout + run.stderr
    assert "R 10.99.0.2" not in run.stdout  # ended by the timeout, not answered
