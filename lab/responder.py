#!/usr/bin/python3
"""Lab stand-ins for the OpenStack APIs: one HTTP responder per API port, on a lab node.

Runs on the node (python3 standard library only), as the systemd unit lab-responder, one
process with a thread per port. Every request on every port is answered 200 with the node's
name (and the port in a header), so a client of the VIP sees which controller served it.
Each port binds the node's own address, never the VIP: HAProxy binds the VIP on the same
ports (net.ipv4.ip_nonlocal_bind lets it bind the VIP on nodes that do not hold it).

Fault injection, one port at a time: a file named after the port in DOWN_DIR closes that
port's listening socket (connections refused, as when the API process is stopped); removing
the file opens it again. A restart of the unit opens every port (the directory is the unit's
RuntimeDirectory, emptied at each start).

A port a real lab backend owns (lab/keystone.py: keystone on its catalogue port) is named by a
file in OWNED_DIR, on the node's disk: never served, also while that backend is stopped (a
stopped keystone must be refused, not answered by a stand-in), and across restarts.

    lab-responder CONFIG.json     {"name": NODE, "address": ITS ADDRESS, "ports": [PORT, ...]}
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWN_DIR = "/run/lab-responder/down"
OWNED_DIR = "/etc/lab-responder.owned"
POLL = 0.2  # seconds between looks at DOWN_DIR


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def handler(name: str, port: int):
    body = f"{name}\n".encode()

    class Answer(BaseHTTPRequestHandler):
        server_version = "lab-responder"
        sys_version = ""

        def _answer(self, with_body=True):
            # ?delay=S: answer after S seconds (at most 30), a request still in flight when a
            # fault strikes (tests/bench/failover.py, stale connections)
            _, _, query = self.path.partition("?")
            for pair in query.split("&"):
                key, _, value = pair.partition("=")
                if key == "delay":
                    try:
                        time.sleep(min(max(float(value), 0.0), 30.0))
                    except ValueError:
                        pass
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Lab-Node", name)
            self.send_header("X-Lab-Port", str(port))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self):
            self._answer()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

        def do_HEAD(self):
            self._answer(with_body=False)

        def log_message(self, fmt, *args):
            pass

    return Answer


def main(argv):
    with open(argv[1]) as f:
        config = json.load(f)
    name, address, ports = config["name"], config["address"], [int(p) for p in config["ports"]]
    running: dict[int, Server] = {}
    complained: set[int] = set()
    while True:
        down = set()
        for directory in (DOWN_DIR, OWNED_DIR):
            try:
                down |= {int(p) for p in os.listdir(directory) if p.isdigit()}
            except FileNotFoundError:
                pass
        for port in ports:
            if port in down and port in running:
                server = running.pop(port)
                server.shutdown()
                server.server_close()
                print(f"port {port}: stopped (fault injected, or a real backend owns it)", flush=True)
            elif port not in down and port not in running:
                try:
                    server = Server((address, port), handler(name, port))
                except OSError as exc:
                    if port not in complained:
                        print(f"port {port}: cannot listen on {address}: {exc}; retrying", flush=True)
                        complained.add(port)
                    continue
                complained.discard(port)
                running[port] = server
                threading.Thread(target=server.serve_forever, name=f"port-{port}", daemon=True).start()
                print(f"port {port}: answering as {name} on {address}", flush=True)
        time.sleep(POLL)


if __name__ == "__main__":
    main(sys.argv)
