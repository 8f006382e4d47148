"""Clients that hold connections open while a fault strikes (LAB ONLY; stdlib + the mysql CLI).

tests/bench/failover.py runs this on the host inside one controller's network namespace
(`nsenter --net`), so the controller's kernel settings (net.ipv4.tcp_keepalive_*,
net.ipv4.tcp_retries2, as the deploy sets them from the `sysctl` data) are the ones in play:
on a real control plane the OpenStack services on the controllers are the VIP's clients.
Each client prints one JSON line per finished request: {"client", "t" (epoch, when the request
ended), "ok", "error"}. Every request is in flight most of the time, as a busy service's are:

  http    keep-alive HTTP/1.1 connections through the VIP (--http-connections, each its own
          client "httpN"), GET /?delay=1 back to back (the API stand-in answers after 1 s), so
          that round robin puts a request in flight on every controller; SO_KEEPALIVE on, with
          the kernel's timers
  db      one MariaDB session through the VIP (the mysql client, which turns SO_KEEPALIVE on
          as PyMySQL does), `SELECT SLEEP(1)` back to back
  direct  one TCP connection straight to a controller's memcached (as oslo.cache and
          oslo.messaging talk to memcached and RabbitMQ: node addresses, no VIP), a request
          every 0.5 s; nothing moves to that address when the node dies

No client has a read timeout of its own (oslo.db's PyMySQL has none by default): a request
that gets no answer ends when the kernel gives the connection up, or at --cap seconds, which
the bench reports as "more than cap". After a failure a client reconnects and goes on.

    python3 stale_client.py --vip ADDR --http-port PORT --db-port PORT --db-user USER \
        --direct ADDR:PORT --cap 150
    (MYSQL_PWD in the environment for the db client; every port and account from the site
    model, given by tests/bench/failover.py)
"""

from __future__ import annotations

import argparse
import http.client
import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

_out = threading.Lock()


def emit(client: str, ok: bool, error: str = "") -> None:
    with _out:
        sys.stdout.write(json.dumps({"client": client, "t": time.time(), "ok": ok, "error": error[:200]}) + "\n")
        sys.stdout.flush()


def keepalive(sock: socket.socket) -> None:
    """SO_KEEPALIVE with the kernel's timers (no per-socket TCP_KEEPIDLE/INTVL/CNT)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def http_client(name: str, vip: str, port: int, cap: float, cafile: str | None = None) -> None:
    """Keep-alive GETs; over TLS (the certificate checked against `cafile`) when one is given."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    conn = None
    while True:
        try:
            if conn is None:
                conn = (http.client.HTTPSConnection(vip, port, timeout=3, context=context) if context
                        else http.client.HTTPConnection(vip, port, timeout=3))
                conn.connect()
                keepalive(conn.sock)
                conn.sock.settimeout(cap)
            conn.request("GET", "/?delay=1")
            resp = conn.getresponse()
            resp.read()
            emit(name, resp.status == 200, "" if resp.status == 200 else f"HTTP {resp.status}")
        except (OSError, http.client.HTTPException) as exc:
            emit(name, False, f"{type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)


def db_client(vip: str, port: int, user: str, cap: float) -> None:
    argv = ["mysql", "--no-defaults", "-h", vip, "-P", str(port), "-u", user, "--connect-timeout=3",
            "--disable-reconnect", "-N", "-B", "-n"]
    proc = None
    while True:
        try:
            if proc is None or proc.poll() is not None:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)
            proc.stdin.write("SELECT SLEEP(1);\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], cap)
            line = proc.stdout.readline() if ready else None
            if line is None:
                raise OSError(f"no answer in {cap:.0f}s")
            if not line:
                raise OSError(f"session closed (mysql exited {proc.wait()})")
            emit("db", True)
        except OSError as exc:
            emit("db", False, str(exc))
            if proc is not None:
                proc.kill()
                proc.wait()
            proc = None
            time.sleep(0.2)


def direct_client(target: str, cap: float) -> None:
    host, _, port = target.rpartition(":")
    sock = None
    while True:
        try:
            if sock is None:
                sock = socket.create_connection((host, int(port)), timeout=3)
                sock.settimeout(cap)
            sock.sendall(b"version\r\n")
            if not sock.recv(256):
                raise OSError("closed by the server")
            emit("direct", True)
            time.sleep(0.5)
        except OSError as exc:
            emit("direct", False, f"{type(exc).__name__}: {exc}")
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--db-port", type=int, required=True)
    ap.add_argument("--db-user", required=True)
    ap.add_argument("--direct", help="ADDR:PORT of one controller's memcached")
    ap.add_argument("--http-connections", type=int, default=4)
    ap.add_argument("--cap", type=float, default=150)
    ap.add_argument("--cafile", help="the HTTP listener takes TLS: verify its certificate with this CA")
    a = ap.parse_args()
    threads = [threading.Thread(target=http_client, args=(f"http{i}", a.vip, a.http_port, a.cap, a.cafile), daemon=True)
               for i in range(a.http_connections)]
    threads.append(threading.Thread(target=db_client, args=(a.vip, a.db_port, a.db_user, a.cap), daemon=True))
    if a.direct:
        threads.append(threading.Thread(target=direct_client, args=(a.direct, a.cap), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
