"""Monitoring (docs/monitoring.md): this node's Prometheus targets and its Alertmanager's cluster,
asked over HTTP on the node address (where the deploy binds them), by python3 (always on the
nodes; curl may not be).

The probe prints only what the report reads, one JSON value: Alertmanager's /api/v2/status also
holds its whole alertmanager.yml (webhook URLs, which may carry tokens), and Prometheus'
targets their discovered labels; neither reaches pyinfra's output.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from facts.probe import HTTP_GET, NO_OUTPUT, failure, find_json_object, probe, split_probe

# Seconds for one HTTP request: beyond Prometheus' scrape_timeout (10 s, its default; the
# rendered prometheus.yml does not set it). While Prometheus applies a new configuration (a
# deploy's reload) it stops the scrape pools of the targets it drops, waiting for their scrapes
# in flight, and /api/v1/targets waits with it: with a controller just removed and powered off,
# every Prometheus' answer took longer than 5 s (the lab's make test, test_60), up to a timeout.
TIMEOUT = 15

# argv: address, port, path, what to print ("targets" or "cluster"); facts.probe HTTP_GET.
# The whole probe is bounded by its own alarm, ending it with `timeout`'s status 124 ("timed
# out"): a `timeout` process in front of python3 was one more process at every run.
HTTP_PROBE = HTTP_GET + """\
import os, signal
signal.signal(signal.SIGALRM, lambda *_: os._exit(124))
signal.alarm(%d)
address, port, path, what = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    status, body = http_get(address, port, path, timeout=%d)
except OSError as exc:
    sys.exit("error: %%s:%%d%%s: %%s" %% (address, port, path, exc))
if status.split(" ")[1:2] != ["200"]:
    sys.exit("error: %%s:%%d%%s answered %%r" %% (address, port, path, status[:80]))
data = json.loads(body)
if what == "targets":
    out = [{"job": t["labels"].get("job"), "node": t["labels"].get("node"), "instance": t["labels"].get("instance"),
            "health": t.get("health"), "lastError": t.get("lastError") or ""}
           for t in data["data"]["activeTargets"]]
    print(json.dumps({"targets": out}))
else:
    c = data["cluster"]
    print(json.dumps({"cluster": {"status": c.get("status"), "peers": [p.get("address") for p in c.get("peers") or []]}}))
""" % (TIMEOUT + 5, TIMEOUT)


def http_probe(address: str, port: int, path: str, what: str) -> str:
    return probe("python3", f"python3 -c {shlex.quote(HTTP_PROBE)} {shlex.quote(address)} {int(port)} "
                            f"{shlex.quote(path)} {what}")


def json_answer(output, key: str, what: str) -> tuple[dict, str | None]:
    """(the probe's JSON object, which has `key`; {} on error, error text or None)."""
    body, rc, missing, _ = split_probe(output)
    error = failure(body, rc, missing, what)
    data = None
    if not error:
        data, error = find_json_object(body, key, what)
    return data or {}, error


class PrometheusTargets(FactBase):
    """The active targets of this node's Prometheus and the health of each (up, down, unknown:
    not scraped yet).

    .. code:: python

        {"answering": True, "targets": [{"job": "node", "node": "node01", "instance": "10.77.0.11:9100",
                                         "health": "up", "last_error": ""}], "error": None}
    """

    @staticmethod
    def default():
        return {"answering": False, "targets": [], "error": NO_OUTPUT}

    def command(self, address: str, port: int):
        return http_probe(address, port, "/api/v1/targets?state=active", "targets")

    def process(self, output):
        data, error = json_answer(output, "targets", "prometheus targets")
        targets = [{"job": t.get("job"), "node": t.get("node"), "instance": t.get("instance"), "health": t.get("health"),
                    "last_error": t.get("lastError") or ""} for t in data.get("targets") or []]
        return {"answering": error is None, "targets": targets, "error": error}


class AlertmanagerCluster(FactBase):
    """This node's Alertmanager's cluster: its status (ready, settling, disabled) and the
    addresses of its peers, itself included, without the port.

    .. code:: python

        {"answering": True, "status": "ready", "peers": ["10.77.0.11", "10.77.0.12", "10.77.0.13"], "error": None}
    """

    @staticmethod
    def default():
        return {"answering": False, "status": None, "peers": [], "error": NO_OUTPUT}

    def command(self, address: str, port: int):
        return http_probe(address, port, "/api/v2/status", "cluster")

    def process(self, output):
        data, error = json_answer(output, "cluster", "alertmanager status")
        cluster = data.get("cluster") or {}
        peers = sorted(str(p).rsplit(":", 1)[0] for p in cluster.get("peers") or [] if p)
        return {"answering": error is None, "status": cluster.get("status"), "peers": peers, "error": error}
