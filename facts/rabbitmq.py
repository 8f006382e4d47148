"""RabbitMQ: a node's cluster as its files record it (read without an Erlang VM, for the
deploy), the running cluster as its management API reports it (for the report, also without
an Erlang VM), and its definitions."""

from __future__ import annotations

import json
import re
import shlex

from pyinfra.api import FactBase

from facts.probe import EXPECTED, HTTP_GET, NO_OUTPUT, failure, find_json_object, probe, split_probe, tls_reading


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
            # the shell's own test and read (grep and hostname were two processes at every run)
            f"b=; [ -n \"$(ss -Hltn '( {ports} )' 2>/dev/null)\" ] && b=broker; [ -n \"$b\" ] && echo broker; "
            f"{reach}"
            "h=; read -r h < /proc/sys/kernel/hostname; "
            "cat /var/lib/rabbitmq/mnesia/rabbit@${h%%.*}/cluster_nodes.config 2>/dev/null; echo; echo __end"
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


# GET /api/nodes's fields the report reads (RabbitMQ 3.10's management API; `columns` keeps
# the answer small). A node that is not running has only name, type and running.
NODE_COLUMNS = ("name", "running", "type", "partitions", "mem_alarm", "disk_free_alarm")
API_TIMEOUT = 10  # seconds curl may take (connect and answer); `timeout` bounds it again


class RabbitmqMembers(FactBase):
    """The cluster as this node's management API reports it (GET /api/nodes, the node's own
    address and rabbitmq_management_port), read with curl as the monitoring account whose
    login is in the 0600 root file `config` (curl -K: the password is on no command line, in
    no argument and in no answer); no Erlang VM is started (rabbitmqctl cluster_status took
    1-2 s of CPU per controller). The same dict rabbitmqctl cluster_status gave:

    .. code:: python

        {"running_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "disk_nodes": ["rabbit@node01", "rabbit@node02", "rabbit@node03"],
         "partitions": [], "alarms": [], "error": None}

    A node whose management listener does not answer (broker stopped, its `rabbit` app not
    running, paused by pause_minority), a refused login or an answer that is not the list of
    nodes is an `error`. The API's node statistics (partitions, alarms) are as fresh as its
    statistics interval (5 s by default).
    """

    @staticmethod
    def default():
        return {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": [], "error": NO_OUTPUT}

    def command(self, address: str, port: int, config: str):
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{int(port)}/api/nodes?columns={','.join(NODE_COLUMNS)}"
        q = shlex.quote(config)
        return probe("curl", f"[ -r {q} ] || {{ echo {shlex.quote(f'error: {config} not readable (the deploy writes it)')}; exit 2; }}; "
                             f"timeout {API_TIMEOUT + 5} curl -sS --fail --globoff --noproxy '*' --max-time {API_TIMEOUT} "
                             f"-K {q} {shlex.quote(url)}")

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        result = {"running_nodes": [], "disk_nodes": [], "partitions": [], "alarms": []}
        error = failure(body, rc, missing, "rabbitmq management API GET /api/nodes")
        nodes = None
        if not error:
            nodes, error = _node_list(body)
        if nodes is not None:
            result["running_nodes"] = sorted(n["name"] for n in nodes if n.get("running") is True)
            result["disk_nodes"] = sorted(n["name"] for n in nodes if n.get("type") == "disc")
            # cluster_status's map {node: [nodes it cannot see]}, as it was written
            result["partitions"] = [f"{n['name']}: {', '.join(map(str, n['partitions']))}"
                                    for n in sorted(nodes, key=lambda n: n["name"]) if n.get("partitions")]
            result["alarms"] = [f"{what} alarm on {n['name']}" for n in sorted(nodes, key=lambda n: n["name"])
                                for key, what in (("mem_alarm", "memory"), ("disk_free_alarm", "disk")) if n.get(key) is True]
        result["error"] = error
        return result


def _node_list(body: list[str]):
    """(the nodes of GET /api/nodes's answer: a JSON list of objects with a name, None) or
    (None, error text quoting the start of the answer)."""
    text = "\n".join(body).strip()
    what = "rabbitmq management API GET /api/nodes"
    try:
        nodes = json.loads(text)
    except ValueError as exc:
        problem = f"unparsable JSON ({exc})" if text.startswith(("[", "{")) else "no JSON in the answer"
    else:
        if isinstance(nodes, list) and nodes and all(isinstance(n, dict) and isinstance(n.get("name"), str) for n in nodes):
            return nodes, None
        problem = "not a list of nodes"
    snippet = " ".join(text.split())[:160]
    return None, f"{what}: {problem}" + (f": {snippet}" if snippet else "")


# What RabbitmqDefinitions keeps of the definitions (the plan reads users, vhosts, permissions
# and policies): a production broker's queues, exchanges and bindings never cross the wire.
DEFINITIONS_KEPT = ("rabbit_version", "rabbitmq_version", "users", "vhosts", "permissions", "policies")

# On the host: the definitions from the node's management API (GET /api/definitions as the
# administrator, whose password is among the expected values on the bundle's stdin: no file
# holds it, no argument names it), else from `rabbitmqctl export_definitions` (an Erlang VM,
# 0.5 s of CPU: a first deploy before the administrator exists, a rotated password, a listener
# that does not answer). Then, in export_definitions' JSON object (a line that starts with `{`),
# each user's password_hash is replaced by password_ok: whether it is the hash of the password
# expected for that user (facts.probe EXPECTED, section "rabbitmq"; RabbitMQ's
# rabbit_password_hashing_sha256, base64(salt + sha256(salt + password))), and only
# DEFINITIONS_KEPT is kept, with `read_with` naming the source. No hash leaves the host: a line
# that names password_hash outside such an object (a cut answer) is not passed on either.
# Arguments: the administrator's name, the node's address and management port (none: the CLI only).
DEFINITIONS_READ = EXPECTED + HTTP_GET + f"""
import base64, hashlib
KEPT = {DEFINITIONS_KEPT!r}
want = expected("rabbitmq")
admin, address, port = (sys.argv[1:4] + ["", "", ""])[:3]

def from_api():
    password = want.get(admin)
    if not (admin and address and port and isinstance(password, str)):
        return None
    login = base64.b64encode((admin + ":" + password).encode()).decode()
    try:
        status, body = http_get(address, int(port), "/api/definitions", [("Authorization", "Basic " + login)], {API_TIMEOUT})
        data = json.loads(body.decode()) if status.split(" ")[1:2] == ["200"] else None
    except (OSError, ValueError):  # refused, timed out, not JSON; a 401 (a password not yet set): the CLI says why
        return None
    return data if isinstance(data, dict) and isinstance(data.get("users"), list) else None

def matches(user):
    password = want.get(user.get("name"))
    try:
        raw = base64.b64decode(user.get("password_hash") or "", validate=True)
    except ValueError:
        return False
    return isinstance(password, str) and len(raw) > 4 and hashlib.sha256(raw[:4] + password.encode()).digest() == raw[4:]

def kept(data):  # the definitions as they leave the host: password_ok for each user's hash, only KEPT
    for user in data.get("users") or []:
        if isinstance(user, dict):
            user["password_ok"] = matches(user)
            user.pop("password_hash", None)
    return {{**{{key: data[key] for key in KEPT if key in data}}, "read_with": source}} if "users" in data else data

data = from_api()
if data is not None:  # already parsed: written as it leaves, not parsed again
    source, rc = "management API", 0
    text = ""
    sys.stdout.write(json.dumps(kept(data)) + "\\n")
else:
    import subprocess
    try:
        done = subprocess.run(["timeout", "30", "rabbitmqctl", "export_definitions", "-", "--silent"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text, rc = done.stdout.decode(errors="replace") + "\\n", done.returncode
    except OSError as exc:
        text, rc = "error: rabbitmqctl: " + str(exc) + "\\n", 127
    source = "rabbitmqctl export_definitions"
# The CLI's answer: its JSON object (a line that starts with `{{`) as it leaves; warnings as they are.
decoder, at = json.JSONDecoder(), 0
while at < len(text):
    end = text.find("\\n", at) + 1 or len(text)
    line = text[at:end]
    if line.lstrip().startswith("{{"):
        try:
            data, end = decoder.raw_decode(text, at + len(line) - len(line.lstrip()))
        except ValueError:
            data = None
        if isinstance(data, dict):
            line = json.dumps(kept(data)) + "\\n"
            end = text.find("\\n", end) + 1 or len(text)
    if '"password_hash"' in line:  # the key; its algorithm's name (rabbit_password_hashing_sha256) is no hash
        line = "(a line of a cut answer, not shown: it held a password hash)\\n"
    sys.stdout.write(line)
    at = end
sys.exit(rc)
"""


class RabbitmqDefinitions(FactBase):
    """Users (each with password_ok: whether its password is the one the run expects, compared
    on the host; no hash is printed), vhosts, permissions and policies, with `read_with` (the
    management API or rabbitmqctl export_definitions, DEFINITIONS_READ) and an `error` key
    (None when read). + admin: the management administrator's name; + address, port: the
    node's management listener. Without them (or without the expected values on stdin) the
    CLI reads them.
    """

    @staticmethod
    def default():
        return {"error": NO_OUTPUT}

    def command(self, admin: str = "", address: str = "", port: int = 0):
        api = f"{shlex.quote(admin)} {shlex.quote(address)} {int(port)}" if admin and address and port else ""
        return probe("rabbitmqctl", f"python3 -c {shlex.quote(DEFINITIONS_READ)} {api}".rstrip())

    def process(self, output):
        body, rc, missing, _ = split_probe(output)
        error = failure(body, rc, missing, "rabbitmqctl export_definitions")
        data = None
        if not error:
            data, error = find_json_object(body, "users", "rabbitmqctl export_definitions")
        return {**(data or {}), "error": error}


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
            # the main process first (the Erlang VM itself on Debian), its children only if it
            # is not the VM (a pgrep less at every run)
            "vm() { for p in \"$@\"; do args=$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null); case \"$args\" in "
            "*beam*-proto_dist\\ inet_tls*) r=tls; return ;; *beam*) r=plain; return ;; esac; done; }; "
            "pid=$(systemctl show -p MainPID --value rabbitmq-server 2>/dev/null); "
            "if [ -z \"$pid\" ] || [ \"$pid\" = 0 ]; then echo rabbitmq=stopped; "
            "else r=unknown; vm $pid; [ $r = unknown ] && vm $(pgrep -P \"$pid\" 2>/dev/null); "
            "echo rabbitmq=$r; fi; echo end=yes"
        )

    def process(self, output):
        return tls_reading(output, "rabbitmq")


# What openssl s_client says of the AMQP over TLS listener (OpenSSL 3.0), by the state it shows.
NOTHING_LISTENS = "connect: nothing listens on the port (ss shows no listening socket)"
_REFUSED = ("Connection refused", "connect:errno=111", NOTHING_LISTENS)
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
        # Nothing listening on the port at all (ss: the kernel's listening TCP sockets, IPv4 and
        # IPv6, over netlink; reading /proc/net/tcp and tcp6 took 3x its CPU): refused, said
        # without starting openssl (its start is most of this fact's CPU). Without ss, openssl says.
        none = f"command -v ss >/dev/null 2>&1 && [ -z \"$(ss -Hltn 'sport = :{int(port)}' 2>/dev/null)\" ]"
        return probe("openssl", f"if {none}; then echo {shlex.quote(NOTHING_LISTENS)}; exit 1; fi; "
                                f"timeout 10 openssl s_client -brief -connect {shlex.quote(f'{address}:{int(port)}')}{check} "
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
