"""The apt proxy: an apt-cacher-ng on the host, bound to 127.0.0.1 and the bridge address, that
fetches only from deb.debian.org; its cache is kept under /var/tmp/halab across `down`."""

from __future__ import annotations

import subprocess
import time

from lab.host import cmdline, find_procs, pid_alive, read_pid, tcp_open, terminate, write
from lab.names import APT_CACHE_DIR, APT_PROXY_PORT, HOST_ADDRESS, MIRROR, RUN_DIR, LabError

ACNG_DIR = RUN_DIR / "acng"
ACNG_PID = ACNG_DIR / "pid"


def proxy_config() -> str:
    return "\n".join([
        f"CacheDir: {APT_CACHE_DIR}",
        f"LogDir: {ACNG_DIR / 'log'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"Port: {APT_PROXY_PORT}",
        f"BindAddress: 127.0.0.1 {HOST_ADDRESS}",
        f"SocketPath: {ACNG_DIR / 'socket'}",
        f"PidFile: {ACNG_DIR / 'acng.pid'}",
        # only the Debian mirror, nothing else (ForceManaged refuses unknown hosts)
        "Remap-debrep: file:deb_mirror*.gz /debian deb.debian.org/debian ; file:backends_debian",
        "Remap-secdeb: security.debian.org security.debian.org/debian-security "
        "deb.debian.org/debian-security /debian-security ; deb.debian.org/debian-security",
        "ForceManaged: 1",
        "ExThreshold: 4",
        "ReportPage: acng-report.html",
        "NetworkTimeout: 30",
        "ForeGround: 1",
        "",
    ])


def proxy_pid():
    pid = read_pid(ACNG_PID)
    if pid and pid_alive(pid) and str(ACNG_DIR) in " ".join(cmdline(pid)):
        return pid
    return None


def ensure_apt_proxy() -> None:
    if proxy_pid():
        if tcp_open("127.0.0.1", APT_PROXY_PORT) and tcp_open(HOST_ADDRESS, APT_PROXY_PORT):
            return
        stop_apt_proxy()
    for host in ("127.0.0.1", HOST_ADDRESS):
        if tcp_open(host, APT_PROXY_PORT, 0.5):
            raise LabError(f"address in use: {host}:{APT_PROXY_PORT} is held by another process "
                           f"(see: ss -ltnp 'sport = :{APT_PROXY_PORT}'); stop it first")
    conf = ACNG_DIR / "conf"
    (ACNG_DIR / "log").mkdir(parents=True, exist_ok=True)
    APT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    write(conf / "acng.conf", proxy_config())
    write(conf / "backends_debian", f"{MIRROR}/\n")
    log = open(ACNG_DIR / "log" / "stdout.log", "ab")
    p = subprocess.Popen(["apt-cacher-ng", "-c", str(conf)], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    log.close()
    write(ACNG_PID, f"{p.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise LabError(f"apt-cacher-ng exited at start (exit {p.returncode}); "
                           f"see {ACNG_DIR / 'log'}")
        if tcp_open("127.0.0.1", APT_PROXY_PORT) and tcp_open(HOST_ADDRESS, APT_PROXY_PORT):
            return
        time.sleep(0.2)
    raise LabError(f"apt-cacher-ng did not listen on port {APT_PROXY_PORT} within 20 s")


def stop_apt_proxy() -> None:
    pids = set()
    pid = read_pid(ACNG_PID)
    if pid and str(ACNG_DIR) in " ".join(cmdline(pid)):
        pids.add(pid)
    pids |= set(find_procs(lambda argv: argv and argv[0].endswith("apt-cacher-ng")
                            and str(ACNG_DIR) in " ".join(argv)))
    terminate(pids, 10)
