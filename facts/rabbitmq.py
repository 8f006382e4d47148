"""RabbitMQ: a node's cluster as its files record it (read without an Erlang VM, for the
deploy), the running cluster as rabbitmqctl reports it (for the report), and its definitions."""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase

from facts.probe import EXPECTED, NO_OUTPUT, failure, find_json_object, probe, split_probe, tls_reading


class RabbitmqCluster(FactBase):
    """
    This node's cluster as RabbitMQ last recorded it (its mnesia cluster_nodes.config, read
    without starting an Erlang VM), before the run, and whether its broker listens for AMQP
    (a node whose unit is active while its `rabbit` app is not running has no listener: on
    `port`, or `tls_port` with AMQP over TLS). Only
    such a node probes `peers` (addresses) on the Erlang distribution port `dist_port`, all at
    once, 2 s at most:
    `reaches` lists those that accepted a connection from it (a node paused by pause_minority
    reaches no majority); None when not probed:

    .. code:: python

        {"installed": True, "running": True, "broker": True,
         "nodes": ["rabbit@node01", "rabbit@node02"], "reaches": None, "error": None}
    """

    @staticmethod
    def default():
        return {"installed": None, "running": None, "broker": None, "nodes": [], "reaches": None, "error": NO_OUTPUT}

    def command(self, port: int = 5672, peers: tuple = (), dist_port: int = 25672, tls_port: int = 0):
        # addresses come from validated site data; quoted all the same. A broker listens on the
        # plain AMQP port, the TLS one (rabbitmq_amqp_tls), or both: either shows it runs, whatever
        # the setting this run brings (a switch reads brokers still started with the other one).
        ports = " or ".join(f"sport = :{int(p)}" for p in (port, tls_port) if p)
        probe_peers = " ".join(shlex.quote(str(a)) for a in peers)
        reach = (
            f"if [ \"$a\" = running ] && [ -z \"$b\" ]; then for p in {probe_peers}; do "
            f"( timeout 2 bash -c \"exec 3<>/dev/tcp/$p/{int(dist_port)}\" 2>/dev/null && echo \"reach $p\" ) & "
            "done; wait; echo probed; fi; " if peers else ""
        )
        return (
            "command -v rabbitmqctl >/dev/null 2>&1 && echo installed || echo missing; "
            "a=$(systemctl is-active -q rabbitmq-server && echo running || echo stopped); echo \"$a\"; "
            f"b=$(ss -Hltn '( {ports} )' 2>/dev/null | grep -q . && echo broker); [ -n \"$b\" ] && echo broker; "
            f"{reach}"
            "cat /var/lib/rabbitmq/mnesia/rabbit@$(hostname -s)/cluster_nodes.config 2>/dev/null; echo; echo __end"
        )

    def process(self, output):
        if "__end" not in output or not {"installed", "missing"} & set(output):
            return {**self.default(), "error": "rabbitmq state: output cut short (no end marker)"}
        text = "\n".join(output)
        # {[all nodes],[disc nodes]}.
        m = re.search(r"\{\[([^\]]*)\]", text)
        nodes = sorted(n.strip().strip("'") for n in m.group(1).split(",") if n.strip()) if m else []
        return {
            "installed": "installed" in output,
            "running": "running" in output,
            "broker": "broker" in output,
            "nodes": nodes,
            "reaches": sorted(line[6:] for line in output if line.startswith("reach ")) if "probed" in output else None,
            "error": None,
        }


class RabbitmqMembers(FactBase):
    """`rabbitmqctl cluster_status --formatter json` on this node.

    .. code:: python

        {"running_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "disk_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "partitions": [], "alarms": [], "error": None}
    """

    @staticmethod
    def default():
        return {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": [], "error": NO_OUTPUT}

    def command(self):
        return probe("rabbitmqctl", "timeout 30 rabbitmqctl -q cluster_status --formatter json")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": []}
        error = failure(body, rc, missing, "rabbitmqctl cluster_status")
        data = None
        if not error:
            data, error = find_json_object(body, "running_nodes", "rabbitmqctl cluster_status")
        if isinstance(data, dict):
            result["running_nodes"] = sorted(data.get("running_nodes") or [])
            result["disk_nodes"] = sorted(data.get("disk_nodes") or [])
            partitions = data.get("partitions") or []
            # A map {node: [nodes it cannot see]} or a list, depending on the version.
            if isinstance(partitions, dict):
                partitions = [f"{node}: {', '.join(map(str, seen))}" for node, seen in partitions.items()]
            result["partitions"] = [str(p) for p in partitions]
            result["alarms"] = [_alarm_text(a) for a in data.get("alarms") or []]
        elif not error:
            error = "rabbitmqctl cluster_status: JSON is not an object"
        result["error"] = error
        return result


# On the host, export_definitions' JSON object (a line that starts with `{`) with each user's
# password_hash replaced by password_ok: whether it is the hash of the password expected for
# that user (facts.probe EXPECTED, section "rabbitmq"; RabbitMQ's rabbit_password_hashing_sha256,
# base64(salt + sha256(salt + password))). No hash leaves the host: a line that names
# password_hash outside such an object (a cut answer) is not passed on either.
DEFINITIONS_COMPARE = EXPECTED + """
import base64, hashlib
want = expected("rabbitmq")

def matches(user):
    password = want.get(user.get("name"))
    try:
        raw = base64.b64decode(user.get("password_hash") or "", validate=True)
    except ValueError:
        return False
    return isinstance(password, str) and len(raw) > 4 and hashlib.sha256(raw[:4] + password.encode()).digest() == raw[4:]

text = sys.stdin.read()
decoder, at = json.JSONDecoder(), 0
while at < len(text):
    end = text.find("\\n", at) + 1 or len(text)
    line = text[at:end]
    if line.lstrip().startswith("{"):
        try:
            data, end = decoder.raw_decode(text, at + len(line) - len(line.lstrip()))
        except ValueError:
            data = None
        if isinstance(data, dict):
            for user in data.get("users") or []:
                if isinstance(user, dict):
                    user["password_ok"] = matches(user)
                    user.pop("password_hash", None)
            line = json.dumps(data) + "\\n"
            end = text.find("\\n", end) + 1 or len(text)
    if '"password_hash"' in line:  # the key; its algorithm's name (rabbit_password_hashing_sha256) is no hash
        line = "(a line of a cut answer, not shown: it held a password hash)\\n"
    sys.stdout.write(line)
    at = end
"""


class RabbitmqDefinitions(FactBase):
    """Users (each with password_ok: whether its password is the one the run expects, compared
    on the host, DEFINITIONS_COMPARE; no hash is printed), vhosts, permissions and policies,
    from export_definitions, with an `error` key (None when read)."""

    @staticmethod
    def default():
        return {"error": NO_OUTPUT}

    def command(self):
        # rabbitmqctl's status kept: the filter runs on its saved output
        return probe("rabbitmqctl", "out=$(timeout 30 rabbitmqctl export_definitions - --silent 2>&1); rc=$?; "
                                    f"printf '%s\\n' \"$out\" | python3 -c {shlex.quote(DEFINITIONS_COMPARE)}; exit $rc")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        error = failure(body, rc, missing, "rabbitmqctl export_definitions")
        data = None
        if not error:
            data, error = find_json_object(body, "users", "rabbitmqctl export_definitions")
        return {**(data or {}), "error": error}


def _alarm_text(alarm) -> str:
    """`memory alarm on rabbit@node01` from the JSON formatter's alarm maps."""
    if isinstance(alarm, dict):
        what = alarm.get("resource") or alarm.get("type") or json.dumps(alarm, sort_keys=True)
        return f"{what} alarm on {alarm.get('node', '?')}"
    return str(alarm)


class RabbitmqFeatureFlags(FactBase):
    """The cluster's feature flags as this node reports them (`rabbitmqctl list_feature_flags`):
    every stable one must be enabled before RabbitMQ moves to another minor version. Read
    only when the site pins rabbitmq-server (package_versions).

    .. code:: python

        {"flags": {"quorum_queue": {"state": "enabled", "stability": "required"},
                   "khepri_db": {"state": "disabled", "stability": "experimental"}},
         "error": None}
    """

    @staticmethod
    def default():
        return {"flags": {}, "error": NO_OUTPUT}

    def command(self):
        return probe("rabbitmqctl", "timeout 30 rabbitmqctl -q list_feature_flags --no-table-headers name state stability")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        error = failure(body, rc, missing, "rabbitmqctl list_feature_flags")
        flags = {}
        for line in body:
            words = line.split()
            if len(words) == 3 and re.fullmatch(r"[a-z0-9_]+", words[0]):
                flags[words[0]] = {"state": words[1], "stability": words[2]}
        if not error and not flags:
            error = "rabbitmqctl list_feature_flags: no feature flag in the answer"
        return {"flags": flags if not error else {}, "error": error}


class RabbitmqTls(FactBase):
    """
    Whether the running broker's Erlang distribution is TLS (rabbitmq_tls), read before the run
    from the command line of rabbitmq-server's main process or a child of it, the Erlang VM
    (`-proto_dist inet_tls`). "stopped" when the unit has no main process, "unknown" when
    neither is an Erlang VM:

    .. code:: python

        {"rabbitmq": "plain", "error": None}
    """

    @staticmethod
    def default():
        return {"rabbitmq": None, "error": NO_OUTPUT}

    def command(self):
        return (
            "pid=$(systemctl show -p MainPID --value rabbitmq-server 2>/dev/null); "
            "if [ -z \"$pid\" ] || [ \"$pid\" = 0 ]; then echo rabbitmq=stopped; "
            "else r=unknown; for p in $pid $(pgrep -P \"$pid\" 2>/dev/null); do "
            "args=$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null); case \"$args\" in "
            "*beam*-proto_dist\\ inet_tls*) r=tls; break ;; *beam*) r=plain; break ;; esac; done; "
            "echo rabbitmq=$r; fi; echo end=yes"
        )

    def process(self, output):
        return tls_reading(output, "rabbitmq")


# What openssl s_client says of the AMQP over TLS listener (OpenSSL 3.0), by the state it shows.
_REFUSED = ("Connection refused", "connect:errno=111")
_NOT_TLS = ("wrong version number", "packet length too long", "record layer failure")


class AmqpTls(FactBase):
    """
    What answers on this node's AMQP over TLS port (rabbitmq_amqp_tls_port on its address), read
    by `openssl s_client` on the node: "tls" (a TLS handshake completed; with `ca`, the
    certificate checked against that CA and for the node's address), "plain" (something answers
    without TLS), "stopped" (nothing listens: refused), "unknown" (the handshake failed: `detail`
    says why, e.g. a certificate that does not verify). The state's words are facts.probe's
    TLS_STATES. Read with and without rabbitmq_amqp_tls: off, nothing may answer there.

    .. code:: python

        {"amqp_tls": "tls", "protocol": "TLSv1.3", "verified": True, "detail": None, "error": None}
    """

    @staticmethod
    def default():
        return {"amqp_tls": None, "protocol": None, "verified": False, "detail": None, "error": NO_OUTPUT}

    def command(self, address: str, port: int, ca: str = ""):
        check = f" -CAfile {shlex.quote(ca)} -verify_return_error -verify_ip {shlex.quote(address)}" if ca else ""
        return probe("openssl", f"timeout 10 openssl s_client -brief -connect {shlex.quote(f'{address}:{int(port)}')}{check} "
                                "</dev/null", {"port": str(int(port))})

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        out = {"amqp_tls": None, "protocol": None, "verified": False, "detail": None, "error": None}
        if missing or rc is None or rc == 124:
            return {**out, "error": failure(body, rc, missing, "openssl s_client")}
        text = "\n".join(body)
        values = dict(line.split(": ", 1) for line in body if ": " in line and not line.startswith(("error", "verify")))
        if rc == 0 and "CONNECTION ESTABLISHED" in text:
            return {**out, "amqp_tls": "tls", "protocol": values.get("Protocol version"),
                    "verified": values.get("Verification") == "OK"}
        if any(s in text for s in _REFUSED):
            return {**out, "amqp_tls": "stopped"}
        if any(s in text for s in _NOT_TLS):
            return {**out, "amqp_tls": "plain"}
        # openssl's reason: a `verify error:num=..:<reason>` line, else the last field of its first error line
        said = next((line.split(":", 2)[2] for line in body if line.startswith("verify error:") and line.count(":") >= 2), None)
        said = said or next((line.split(":")[5] for line in body if ":error:" in line and line.count(":") >= 6), None)
        return {**out, "amqp_tls": "unknown", "detail": (said or f"openssl s_client: exit status {rc}")[:200]}
