#!/usr/bin/python3
"""The lab's webhook receiver: what Alertmanager sends, recorded (issue 20, docs/monitoring.md).

A small HTTP server of the standard library on this host, started with the lab (`lab up`,
lab/lifecycle.py) on the bridge address like the apt proxy, stopped by its PID at `lab down`.
The lab inventory's `monitoring_webhooks` is its URL (RECEIVER_URL), so every Alertmanager of
the lab posts here. Each POST is appended to RECORDS as one JSON line:

    {"received": "2026-12-06T19:20:01.123456Z", "received_ts": 1796584801.123, "path": "/alerts",
     "payload": {...Alertmanager's webhook body: status, groupKey, alerts [{status, labels,
                 annotations, startsAt, endsAt, fingerprint}], ...}}

and answered 200; a body that is not JSON is answered 400 and recorded with `error` and no
payload (a receiver that drops what it does not understand would hide a sender's bug). GET
answers 200 (a liveness probe). The drills (tests/lab/test_96_alerts.py) read the records with
records() and events(): one alert firing, then resolved, and sent once although three
Alertmanagers run.

    python3 lab/alert_receiver.py --address ADDR --port PORT --records FILE

Stdlib only at module level: the lab starts it as a script (its PID file and its command line,
which names its records file, identify it for `down`).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 4 << 20  # bytes: Alertmanager's largest group is far smaller
START_SECONDS = 10
STOP_SECONDS = 5


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def handler(records: Path):
    lock = threading.Lock()

    class Receive(BaseHTTPRequestHandler):
        server_version = "lab-alert-receiver"
        sys_version = ""

        def _answer(self, code: int, text: str) -> None:
            body = f"{text}\n".encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            self._answer(200, "lab alert receiver")

        def do_POST(self):  # noqa: N802
            now = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, f"at most {MAX_BODY} bytes")
                return
            raw = self.rfile.read(length)
            record = {"received": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                      "received_ts": now, "path": self.path}
            try:
                record["payload"] = json.loads(raw)
                code = 200
            except ValueError as exc:
                record["error"] = f"not JSON: {exc}"
                code = 400
            line = json.dumps(record, sort_keys=True) + "\n"
            with lock, open(records, "a") as f:
                f.write(line)
                f.flush()
            self._answer(code, "recorded" if code == 200 else record["error"])

        def log_message(self, format, *args):  # noqa: A002 - quiet: the records are the log
            pass

    return Receive


def serve(address: str, port: int, records: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    records.parent.mkdir(parents=True, exist_ok=True)
    records.touch()
    server = Server((address, port), handler(records))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- on the lab host: start and stop by PID (lab/lifecycle.py), read the records ----------------
# lab.host is imported in these functions, not above: the receiver itself runs as a script,
# where the `lab` package is not importable.


def pid_file(directory: Path) -> Path:
    return directory / "pid"


def records_file(directory: Path) -> Path:
    return directory / "alerts.jsonl"


def is_receiver(argv: list[str], directory: Path) -> bool:
    """Whether a command line is this receiver's, recording into `directory`."""
    return any(a.endswith("alert_receiver.py") for a in argv) and str(records_file(directory)) in argv


def running_pid(directory: Path) -> int | None:
    """The receiver's PID when its PID file names a live receiver of `directory` (a PID reused
    by another process is never signalled), else None."""
    from lab.host import cmdline, pid_alive, read_pid

    pid = read_pid(pid_file(directory))
    return pid if pid and pid_alive(pid) and is_receiver(cmdline(pid), directory) else None


def start(address: str, port: int, directory: Path) -> int:
    """Start the receiver (idempotent: one already answering is kept); its PID. Raises
    RuntimeError when the address is taken, or it exits at once or does not listen within
    START_SECONDS."""
    from lab.host import tcp_open

    pid = running_pid(directory)
    if pid and tcp_open(address, port):
        return pid
    if pid:
        stop(directory)
    if tcp_open(address, port, 0.5):
        raise RuntimeError(f"address in use: {address}:{port} is held by another process "
                           f"(see: ss -ltnp 'sport = :{port}'); stop it first")
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "stderr.log", "ab") as log:
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--address", address, "--port", str(port),
                              "--records", str(records_file(directory))],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    pid_file(directory).write_text(f"{p.pid}\n")
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"the alert receiver exited at start (exit {p.returncode}); see {directory / 'stderr.log'}")
        if tcp_open(address, port, 0.5):
            return p.pid
        time.sleep(0.1)
    stop(directory)
    raise RuntimeError(f"the alert receiver did not listen on {address}:{port} within {START_SECONDS} s")


def stop(directory: Path) -> bool:
    """Stop the receiver its PID file names (SIGTERM, then SIGKILL after STOP_SECONDS); whether
    one ran. The records stay."""
    from lab.host import terminate

    pid = running_pid(directory)
    if pid:
        terminate([pid], STOP_SECONDS)
    pid_file(directory).unlink(missing_ok=True)
    return bool(pid)


def records(path: Path, since: float = 0.0) -> list[dict]:
    """Every record received at or after `since` (Unix time), oldest first; a torn last line
    (being written) is left for the next read."""
    out = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("received_ts", 0) >= since:
            out.append(r)
    return out


def events(recs: list[dict]) -> list[dict]:
    """One row per alert in each notification: {received_ts, alertname, status (firing |
    resolved), labels, fingerprint}; a notification groups several alerts."""
    out = []
    for r in recs:
        for a in (r.get("payload") or {}).get("alerts") or []:
            labels = a.get("labels") or {}
            out.append({"received_ts": r["received_ts"], "alertname": labels.get("alertname"), "status": a.get("status"),
                        "labels": labels, "fingerprint": a.get("fingerprint")})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Record every Alertmanager webhook POST as a JSON line.")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--records", type=Path, required=True)
    args = p.parse_args(argv)
    serve(args.address, args.port, args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
