"""The lab itself: real nodes, SSH, names, fault injection, growth, clean tear-down.

Every test leaves node01..node03 running and linked (later deploy tests reuse the session's lab),
and ends what it starts, also when it fails (try/finally).
"""

import ipaddress
import json
import os
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import lab
from lab import sitemodel
from lab.aptproxy import proxy_pid, stop_apt_proxy
from lab.host import pid_alive, tcp_open
from lab.images import BASE_OK
from lab.names import APT_CACHE_DIR, APT_PROXY, APT_PROXY_PORT, CA_FILE, HOST_ADDRESS, NODES_DIR, PREFIXLEN, RUN_DIR, STATE_DIR
from lab.network import netns_list
from lab.preflight import check_subnet, find_overlaps

ROOT = Path(__file__).resolve().parents[2]
NODES = ["node01", "node02", "node03"]
PY = sys.executable
NET = ipaddress.ip_network(lab.SUBNET)


def _state(name):
    return {s["name"]: s for s in lab.status()}.get(name, {"state": "absent"})


def _running(name):
    return _state(name)["state"] == "running"


def _ensure_running(names=NODES):
    """Restore the session's lab shape after a fault test, whatever happened."""
    for n in names:
        if not _running(n):
            lab.start(n)
        if _state(n).get("isolated"):
            lab.heal(n)


def _eventually(check, timeout=15.0, interval=0.3):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _ping(src, dst, wait=1):
    return lab.exec_(src, ["ping", "-c", "1", "-W", str(wait), dst], timeout=wait + 10).returncode == 0


def _cli(*args, timeout=300):
    return subprocess.run([PY, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _inventory_hosts():
    ns = runpy.run_path(str(ROOT / "inventories" / "lab.py"))
    return [name for name, _ in ns["controllers"][0]]


# ---------------------------------------------------------------------------------------------

def test_up_gives_three_running_systemd_nodes(lab_nodes):
    assert lab_nodes == NODES
    for n in NODES:
        st = _state(n)
        assert st["state"] == "running", st
        assert st["address"] == lab.address(n) == sitemodel.node_address(n) == str(NET[10 + int(n[4:])])
        assert st["pid"] and pid_alive(st["pid"])
        assert lab.exec_(n, ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        # `up` waits 10 s for the end of boot and goes on; a node whose disk holds the deployed
        # stack (a lab brought down and up again) may still be starting services: wait, bounded
        state = lab.exec_(n, ["timeout", "110", "systemctl", "is-system-running", "--wait"], timeout=120).stdout.strip()
        assert state in ("running", "degraded"), (n, state)
        addr = lab.exec_(n, ["ip", "-4", "-o", "addr", "show", "dev", lab.IFNAME]).stdout
        assert f"{lab.address(n)}/{PREFIXLEN}" in addr
        assert lab.exec_(n, ["hostname"]).stdout.strip() == n


def test_up_is_idempotent(lab_nodes):
    before = {n: _state(n)["pid"] for n in NODES}
    t0 = time.monotonic()
    lab.up(3)
    assert time.monotonic() - t0 < 30
    assert {n: _state(n)["pid"] for n in NODES} == before


def test_ssh_as_root_with_the_lab_key(lab_nodes):
    for n in NODES:
        r = lab.ssh(n, ["sh", "-c", "id -u; hostname"], timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["0", n]


def test_pyinfra_reaches_every_node(lab_nodes):
    r = subprocess.run([str(Path(PY).parent / "pyinfra"), "-y", "inventories/lab.py", "exec", "--",
                        "hostname"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for n in NODES:
        assert f"[{n}] {n}" in r.stdout + r.stderr


def test_nodes_resolve_and_reach_each_other_by_name(lab_nodes):
    for a in NODES:
        for b in NODES:
            if a == b:
                continue
            r = lab.exec_(a, ["getent", "hosts", b])
            assert r.stdout.split()[:2] == [lab.address(b), b], (a, b, r.stdout)
            assert _ping(a, b, wait=2), f"{a} cannot ping {b}"


def test_apt_goes_through_the_host_proxy_with_bounds(lab_nodes):
    for n in NODES:
        dump = lab.exec_(n, ["apt-config", "dump"]).stdout
        assert f'Acquire::http::Proxy "{APT_PROXY}";' in dump
        assert 'Acquire::http::Pipeline-Depth "0";' in dump
        assert 'Acquire::http::Timeout "30";' in dump
        assert 'Acquire::Retries "3";' in dump
        assert lab.exec_(n, ["nc", "-z", "-w", "3", HOST_ADDRESS, str(APT_PROXY_PORT)]).returncode == 0
        # services must be allowed to start in the nodes (the deploy relies on it)
        assert lab.exec_(n, ["test", "-e", "/usr/sbin/policy-rc.d"]).returncode != 0
        # what the deploy needs: sysctl net.* writable, CAP_NET_ADMIN (keepalived adds the VIP)
        r = lab.exec_(n, ["sysctl", "-w", "net.ipv4.ip_nonlocal_bind=1"])
        assert r.returncode == 0, r.stderr
        r = lab.exec_(n, ["sh", "-c", f"ip addr add {NET[250]}/32 dev {lab.IFNAME} && "
                          f"ip addr del {NET[250]}/32 dev {lab.IFNAME}"])
        assert r.returncode == 0, r.stderr


def test_nothing_of_the_lab_leaves_the_machine(lab_nodes):
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    assert Path(f"/proc/sys/net/ipv4/conf/{lab.BRIDGE}/forwarding").read_text().strip() == "0"
    check_subnet()          # the live machine: no overlap with the lab subnet
    for n in NODES:
        routes = lab.exec_(n, ["ip", "-4", "route"]).stdout.splitlines()
        assert sorted(r.split(" proto")[0].strip() for r in routes) == sorted(
            [f"default via {HOST_ADDRESS} dev {lab.IFNAME}", f"{lab.SUBNET} dev {lab.IFNAME}"])
    # the overlap check itself, on made-up data (TEST-NET-1, RFC 5737)
    addrs = [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.5",
                                                "prefixlen": 16}]}]
    routes = [{"dst": "192.0.2.0/25", "dev": "wg0"}, {"dst": "default", "dev": "eth0"}]
    found = find_overlaps("192.0.2.0/24", addrs, routes)
    assert len(found) == 2 and "eth0" in found[0] and "wg0" in found[1]
    assert find_overlaps("192.0.2.0/24", [], [{"dst": "default", "dev": "eth0"}]) == []


def test_secrets_generated_once_kept_private(lab_nodes):
    path = Path(lab.SECRETS_FILE)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert set(data) >= set(sitemodel.secret_names())
    assert len(data["vrrp_auth_pass"]) == 8 and data["vrrp_auth_pass"].isalnum()
    cookie = data["rabbitmq_erlang_cookie"]
    assert len(cookie) >= 20 and cookie.isalpha() and cookie.isupper()
    # the VIP's certificate, signed by the lab's own CA for the VIP's and the external VIP's address
    pem = STATE_DIR / "vip-test.pem"
    pem.write_text(data["haproxy_tls_pem"])
    try:
        checks = [subprocess.run(["openssl", "verify", "-CAfile", str(CA_FILE), "-verify_ip", address, str(pem)],
                                 capture_output=True, text=True, timeout=30) for address in (lab.VIP, lab.EXTERNAL_VIP)]
    finally:
        pem.unlink()
    for ok in checks:
        assert ok.returncode == 0 and ok.stdout.strip().endswith("OK"), ok.stdout + ok.stderr
    assert "PRIVATE KEY-----" in data["haproxy_tls_pem"]
    lab.ensure_secrets()
    assert json.loads(path.read_text()) == data       # not regenerated
    assert not str(path).startswith(str(ROOT))          # outside the repository altogether


def test_inventory_has_the_shape_of_prod(lab_nodes):
    lab_inv = runpy.run_path(str(ROOT / "inventories" / "lab.py"))["controllers"]
    prod_inv = runpy.run_path(str(ROOT / "inventories" / "prod.py"))["controllers"]
    assert isinstance(lab_inv, tuple) and len(lab_inv) == 2
    hosts, data = lab_inv
    assert [h for h, _ in hosts] == NODES
    assert {tuple(sorted(d)) for _, d in hosts} == {tuple(sorted(d)) for _, d in prod_inv[0]}
    assert [d["vrrp_priority"] for _, d in hosts] == [150, 140, 130]
    for name, d in hosts:
        assert d["ssh_hostname"] == d["address"] == lab.address(name)
    # the site's network, VIP and interface are the lab's (lab/names.py), and the interface is
    # named as on the production controllers
    assert data["vip"] == lab.VIP and data["internal_network"] == lab.SUBNET
    assert data["vip_interface"] == lab.IFNAME == prod_inv[1]["vip_interface"]
    assert data["keepalived_virtual_router_id"] != 51
    # the external VIP on the same bridge, with a VRRP instance of its own
    assert data["external_vip"] == lab.EXTERNAL_VIP != lab.VIP
    assert data["keepalived_external_router_id"] not in (None, data["keepalived_virtual_router_id"])
    assert data["secrets_file"] == lab.SECRETS_FILE
    assert data["ssh_key"] == lab.SSH_KEY and data["ssh_user"] == "root"
    assert set(prod_inv[1]) - {"haproxy_log_target", "haproxy_log_facility"} <= set(data)


def test_stop_is_a_clean_poweroff_and_start_brings_the_disk_back(lab_nodes):
    n = "node02"
    token = secrets.token_hex(8)
    assert lab.exec_(n, ["sh", "-c", f"echo {token} > /root/lab-test-marker && sync"]).returncode == 0
    try:
        lab.stop(n)
        assert _state(n)["state"] == "stopped"
        assert not tcp_open(lab.address(n), 22, 1)
        with pytest.raises(lab.LabError, match="not running"):
            lab.exec_(n, ["true"])
        assert "node02" in _inventory_hosts()      # a stopped controller stays in the inventory
        lab.start(n)
        assert _running(n)
        assert lab.ssh(n, ["cat", "/root/lab-test-marker"]).stdout.strip() == token
        assert _ping("node01", n)
    finally:
        _ensure_running()


def test_kill_cuts_power_and_drops_addresses(lab_nodes):
    n = "node03"
    token = secrets.token_hex(8)
    extra = str(NET[199])        # stands for a VIP the node held when it died
    assert lab.exec_(n, ["sh", "-c", f"echo {token} > /root/lab-test-marker && sync && "
                         f"ip addr add {extra}/{PREFIXLEN} dev {lab.IFNAME}"]).returncode == 0
    old_init = _state(n)["pid"]
    try:
        lab.kill(n)
        assert not pid_alive(old_init)
        assert _state(n)["state"] == "stopped"
        addrs = subprocess.run(["ip", "-n", n, "-4", "-o", "addr", "show", "dev", lab.IFNAME],
                               capture_output=True, text=True, timeout=10).stdout
        assert addrs.strip() == "", addrs
        assert not _ping("node01", n)
        assert not _ping("node01", extra)
        assert not tcp_open(lab.address(n), 22, 1)
        lab.start(n)
        assert _running(n) and _state(n)["pid"] != old_init
        assert lab.ssh(n, ["cat", "/root/lab-test-marker"]).stdout.strip() == token
        addrs = lab.exec_(n, ["ip", "-4", "-o", "addr", "show", "dev", lab.IFNAME]).stdout
        assert lab.address(n) in addrs and extra not in addrs
        assert _ping("node01", n)
    finally:
        _ensure_running()


def test_reboot_inside_a_node_comes_back(lab_nodes):
    n = "node02"
    old_init = _state(n)["pid"]
    try:
        lab.exec_(n, ["systemctl", "reboot"])
        assert _eventually(lambda: _state(n)["pid"] not in (None, old_init) and
                           tcp_open(lab.address(n), 22, 0.5), timeout=60)
        assert _eventually(lambda: lab.ssh(n, ["hostname"]).returncode == 0, timeout=30)
        assert _running(n)
    finally:
        _ensure_running()


def test_isolate_cuts_the_link_and_heal_restores_it(lab_nodes):
    n = "node01"
    try:
        lab.isolate(n)
        assert _state(n)["isolated"] is True
        assert not _ping(n, "node02")
        assert not _ping("node02", n)
        assert not _ping("node03", n)
        assert not tcp_open(lab.address(n), 22, 1)
        assert _running(n)                       # cut off, not down
        lab.heal(n)
        assert _state(n)["isolated"] is False
        assert _eventually(lambda: _ping(n, "node02") and _ping("node03", n), timeout=20)
    finally:
        _ensure_running()


def test_cli_exec_status_and_one_line_errors(lab_nodes):
    r = _cli("exec", "node01", "--", "hostname")
    assert r.returncode == 0 and r.stdout.strip() == "node01", r.stderr
    r = _cli("status")
    assert r.returncode == 0
    for n in NODES:
        line = next(l for l in r.stdout.splitlines() if l.startswith(n))
        assert "running" in line and lab.address(n) in line
    for args, msg in ((("kill", "node09"), "unknown node"), (("exec", "nodeX", "--", "true"),
                      "invalid node name"), (("up", "--nodes", "0"), "between")):
        r = _cli(*args)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(errs) == 1 and errs[0].startswith("lab: error:") and msg in errs[0], r.stderr


def test_clear_errors_before_anything_is_touched(lab_nodes):
    """Not root, a missing package, an overlapping subnet: one line each, nothing changed."""
    before = {n: _state(n)["pid"] for n in NODES}
    # not root: the lab package, copied where an unprivileged user can read it
    tmp = Path(tempfile.mkdtemp(prefix="halab-test-"))
    try:
        shutil.copytree(ROOT / "lab", tmp / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        for d in (tmp, tmp / "lab"):
            d.chmod(0o755)
        r = subprocess.run(["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={tmp}",
                            "/usr/bin/python3", "-m", "lab", "up"], capture_output=True,
                           text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(tmp)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        r.stderr.strip()] and "must run as root" in r.stderr, r.stderr
    # a missing package: debootstrap and apt-cacher-ng live in /usr/sbin
    r = subprocess.run([PY, "-m", "lab", "up"], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "apt-get install -y apt-cacher-ng debootstrap" in r.stderr, r.stderr
    # a lab subnet that overlaps the machine's own network
    eth = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"],
                                    capture_output=True, text=True).stdout)
    own = next(a for link in eth if link["ifname"] != lab.BRIDGE for a in link["addr_info"])
    own_net = ipaddress.ip_interface(f"{own['local']}/{own['prefixlen']}").network
    own24 = ipaddress.ip_network(f"{own_net.network_address}/24", strict=False)
    r = subprocess.run([PY, "-m", "lab", "up"], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env={**os.environ, "LAB_SUBNET": str(own24)})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "overlaps this machine's networks" in r.stderr, r.stderr
    # an address in use: another program holds the apt proxy's port
    stop_apt_proxy()
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", APT_PROXY_PORT))
        squatter.listen(1)
        r = _cli("up")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert f"address in use: 127.0.0.1:{APT_PROXY_PORT}" in r.stderr, r.stderr
    finally:
        squatter.close()
        lab.up(3)                       # the lab's own proxy again
    assert proxy_pid()
    assert {n: _state(n)["pid"] for n in NODES} == before


def test_adding_a_fourth_node_leaves_the_others_alone(lab_nodes):
    before = {n: _state(n)["pid"] for n in NODES}
    try:
        lab.up(4)
        assert _running("node04")
        assert {n: _state(n)["pid"] for n in NODES} == before
        assert lab.ssh("node04", ["hostname"]).stdout.strip() == "node04"
        for n in NODES:
            assert lab.exec_(n, ["getent", "hosts", "node04"]).stdout.split()[:2] == \
                [lab.address("node04"), "node04"]
            assert lab.exec_("node04", ["getent", "hosts", n]).stdout.split()[0] == lab.address(n)
        assert _ping("node01", "node04") and _ping("node04", "node03")
        assert _inventory_hosts() == NODES + ["node04"]
    finally:
        if "node04" in lab.node_names() or "node04" in netns_list():
            lab.remove("node04")
    assert [s["name"] for s in lab.status()] == NODES
    assert "node04" not in netns_list()
    assert not Path("/sys/class/net/veth-node04").exists()
    assert not (NODES_DIR / "node04").exists()
    assert _inventory_hosts() == NODES
    assert lab.exec_("node01", ["getent", "hosts", "node04"]).returncode != 0
    assert {n: _state(n)["pid"] for n in NODES} == before


def test_down_leaves_nothing_behind_even_after_an_interrupted_up(lab_nodes):
    """An `up --nodes 5` killed half-way, then a plain `down`: nothing of the lab remains but
    the base image, the apt cache and the node disks. The session's lab is brought back after."""
    p = subprocess.Popen([PY, "-m", "lab", "up", "--nodes", "5"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _eventually(lambda: "node05" in netns_list()
                           or (RUN_DIR / "node04" / "launcher.pid").exists(), timeout=120,
                           interval=0.02)
        os.kill(p.pid, signal.SIGKILL)           # a failure half-way through `up`
        p.wait(timeout=10)
        t0 = time.monotonic()
        r = _cli("down")
        assert r.returncode == 0, r.stderr
        print(r.stderr.strip())                  # "lab down in N s" (shown with -rP)
        assert time.monotonic() - t0 < 90
        assert lab.leftovers() == []
        assert not Path(f"/sys/class/net/{lab.BRIDGE}").exists()
        assert not RUN_DIR.exists()
        assert [n for n in netns_list() if n.startswith("node")] == []
        with open("/proc/mounts") as f:
            mounts = f.read()
        assert "/run/halab" not in mounts and "/var/tmp/halab" not in mounts
        assert not tcp_open("127.0.0.1", APT_PROXY_PORT, 0.5)
        assert BASE_OK.exists() and APT_CACHE_DIR.is_dir()       # kept for next up
        for n in NODES:
            assert (NODES_DIR / n / "upper").is_dir()                   # disks kept
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for extra in ("node04", "node05"):
            if (NODES_DIR / extra).exists() or extra in netns_list():
                lab.remove(extra)
        lab.up(3)
    assert [s["name"] for s in lab.status()] == NODES
    assert all(_running(n) for n in NODES)
    # node files survived the down/up cycle
    assert lab.exec_("node02", ["test", "-s", "/root/lab-test-marker"]).returncode == 0
