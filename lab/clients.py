"""Clients of the VIP, as the OpenStack services are: HTTP to the API stand-ins, SQL one-shot or
in a long-lived Session, counted writes, HAProxy's view of its servers, client threads that run
through a whole drill. Ports, accounts and the VIP come from the site model (lab/sitemodel.py);
nothing here talks to an address outside the lab's subnet."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from facts.haproxy_api import ask, parse_stat
from lab import sitemodel
from lab.machines import exec_
from lab.names import CA_FILE, LabError
from lab.waits import SessionClosed, SqlError, wait_for

# --- HTTP through the VIP ------------------------------------------------------------------

# No proxy: the environment's http_proxy must never carry lab traffic anywhere.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tls_context() -> ssl.SSLContext:
    """Trusts the lab's CA only (it signed the VIP's certificate); the name checked is the VIP."""
    return ssl.create_default_context(cafile=str(CA_FILE))


def _tls_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls_context()))


def http_get(port: int, host: str | None = None, timeout: float = 3) -> str:
    """The body of GET / on the VIP's listener at `port` (https, the certificate verified, when
    the listener takes TLS), or on `host`:port (a node's own server, plain HTTP): the serving
    node's name; raises on any failure."""
    url = sitemodel.vip_url(port) if host is None else f"http://{host}:{port}/"
    # through the VIP: an http listener may redirect to https (horizon), verified the same way
    opener = _tls_opener() if host is None else _opener
    with opener.open(url, timeout=timeout) as r:
        return r.read().decode().strip()


def monitoring_get(node: str, port_key: str, path: str, timeout: float = 10, **params):
    """The JSON answer of a node's Prometheus or Alertmanager (`port_key`: the site's port key)
    on its node address, as an operator's browser asks it."""
    url = f"http://{sitemodel.node_address(node)}:{sitemodel.data(port_key)}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def http_status(url: str, timeout: float = 5) -> int:
    """The HTTP status of GET `url` (https verified against the lab's CA): HAProxy's own 503
    when no server answers counts, the listener answered all the same."""
    try:
        with _tls_opener().open(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_names(port: int, count: int = 30, host: str | None = None, timeout: float = 3) -> list[str | None]:
    """`count` requests, one connection each: the serving node's name, None for a failure."""
    out = []
    for _ in range(count):
        try:
            out.append(http_get(port, host, timeout))
        except (OSError, urllib.error.URLError):
            out.append(None)
    return out


def _status(url: str, user: str, password: str) -> str:
    """The HTTP status of `url` for `user` and `password`; the credentials reach curl on its
    stdin (a config file, `-K -`), never on its command line (visible in `ps`)."""
    quoted = f"{user}:{password}".replace("\\", "\\\\").replace('"', '\\"')
    r = subprocess.run(["curl", "-s", "-K", "-", "-o", "/dev/null", "-w", "%{http_code}", url],
                       input=f'user = "{quoted}"\n', capture_output=True, text=True, timeout=15)
    return r.stdout


def stats_status(password: str) -> str:
    """The HTTP status of node01's HAProxy stats page for the site's stats user and `password`."""
    user, port = sitemodel.data("haproxy_stats_user"), sitemodel.data("haproxy_stats_port")
    return _status(f"http://{sitemodel.node_address('node01')}:{port}/", user, password)


def management_status(password: str, user_key: str = "rabbitmq_admin_user") -> str:
    """The HTTP status of the RabbitMQ management API through the VIP for its administrator
    (the services' user has no management tag), or the account of site key `user_key` (the
    health report's, rabbitmq_monitor_user), and `password` (a node's own port 15672 is for
    the controllers only: the firewall)."""
    user = sitemodel.data(user_key)
    return _status(sitemodel.vip_url(sitemodel.listen_port("rabbitmq_management")).rstrip("/") + "/api/whoami", user, password)


# --- SQL through the VIP -------------------------------------------------------------------


def secrets() -> dict:
    """The lab's secrets {name: value} (its secrets file, as the deploy reads it)."""
    return sitemodel.secrets()


def _mysql_argv(host: str | None, database: str | None = None) -> list[str]:
    argv = ["mysql", "--no-defaults", "-h", host or sitemodel.vip(), "-P", str(sitemodel.listen_port("mariadb")),
            "-u", sitemodel.data("mariadb_admin_user"),
            "--connect-timeout=3", "--disable-reconnect", "-N", "-B"]
    return argv + ([database] if database else [])


def _mysql_env(password: str | None = None) -> dict:
    # The password travels in the environment of the client only: never argv, never printed.
    return {**os.environ, "MYSQL_PWD": password or sitemodel.secret("mariadb_admin_password")}


def sql(query: str, host: str | None = None, timeout: float = 10, database: str | None = None,
        password: str | None = None) -> str:
    """One query in a new connection through `host` (the VIP) as the site's admin account (with
    `password`, else the lab's); its output, stripped. Raises SqlError with mysql's message."""
    try:
        r = subprocess.run(_mysql_argv(host, database) + ["-e", query], env=_mysql_env(password),
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SqlError(f"mysql through {host or 'the VIP'}: no answer in {timeout}s") from None
    if r.returncode != 0:
        raise SqlError((r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1])
    return r.stdout.strip()


def db_node(timeout: float = 10) -> str | None:
    """The node a new connection through the VIP lands on (SELECT @@hostname), None if none."""
    try:
        return sql("SELECT @@hostname", timeout=timeout) or None
    except SqlError:
        return None


def node_sql(node: str, query: str, timeout: float = 30) -> str:
    """A query on one node, as root through its unix socket (not through HAProxy)."""
    r = exec_(node, ["mysql", "-N", "-B", "-e", query], timeout=timeout)
    if r.returncode != 0:
        raise SqlError(f"{node}: {r.stderr.strip()}")
    return r.stdout.strip()


def wsrep(node: str) -> dict[str, str]:
    out = node_sql(node, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
                         "'wsrep_cluster_status','wsrep_cluster_size','wsrep_ready','wsrep_local_state',"
                         "'wsrep_cluster_conf_id')",
                   timeout=15)
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


class Session:
    """A long-lived client session through the VIP (one `mysql` process, one TCP connection),
    as an OpenStack service holds its pooled connections. query() sends one statement and
    reads its one-line answer; SessionClosed when the server side closed the connection."""

    def __init__(self, database: str | None = None, host: str | None = None):
        self.proc = subprocess.Popen(
            _mysql_argv(host, database) + ["-n"], env=_mysql_env(), text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            self.node = self.query("SELECT @@hostname")
        except SessionClosed:
            self.close()
            raise

    def query(self, statement: str, timeout: float = 15) -> str:
        if self.proc.poll() is not None:
            raise SessionClosed(self._why())
        try:
            self.proc.stdin.write(statement.rstrip(";") + ";\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SessionClosed(self._why()) from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise SessionClosed(f"no answer in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise SessionClosed(self._why())
        return line.strip()

    def _why(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().strip() if self.proc.stderr else ""
        return err.splitlines()[-1] if err else f"mysql exited {self.proc.returncode}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


# --- writes that can be counted ------------------------------------------------------------

WRITES_DB = "drills"


def prepare_writes(table: str) -> None:
    """A fresh table drills.<table> (id, node that took the write, client tag)."""
    sql(f"CREATE DATABASE IF NOT EXISTS {WRITES_DB}")
    sql(f"DROP TABLE IF EXISTS {WRITES_DB}.{table}")
    sql(f"CREATE TABLE {WRITES_DB}.{table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "node VARCHAR(32) NOT NULL, client VARCHAR(64) NOT NULL, "
        "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")


def write(session: Session, table: str, client: str, timeout: float = 15) -> tuple[str, int]:
    """One acknowledged write in `session`: (node that took it, its id)."""
    out = session.query(f"INSERT INTO {WRITES_DB}.{table} (node, client) VALUES (@@hostname, '{client}'); "
                        "SELECT @@hostname, LAST_INSERT_ID()", timeout=timeout)
    node, _, ident = out.partition("\t")
    return node, int(ident)


# --- HAProxy's view ------------------------------------------------------------------------


def haproxy_ask(node: str, request: str) -> str:
    """`node`'s HAProxy's answer to one request on its admin socket (show stat, show ssl cert ...)."""
    r = exec_(node, ["sh", "-c", ask(sitemodel.data("haproxy_stats_socket"), request)], timeout=15)
    if r.returncode != 0:
        raise LabError(f"{node}: haproxy {request} failed: {r.stderr.strip()}")
    return r.stdout


def haproxy_certificate(node: str) -> str:
    """The SHA1 fingerprint (upper-case hex) of the certificate `node`'s running HAProxy has
    loaded from the site's haproxy_tls_pem_path: what it serves since its last (re)load."""
    answer = haproxy_ask(node, f"show ssl cert {sitemodel.data('haproxy_tls_pem_path')}")
    for line in answer.splitlines():
        if line.startswith("SHA1 FingerPrint:"):
            return line.split(":", 1)[1].strip().upper()
    raise LabError(f"{node}: haproxy show ssl cert: no fingerprint in {answer[:300]!r}")


def vip_certificate(port: int) -> str:
    """The SHA1 fingerprint (upper-case hex) of the certificate the VIP presents on `port`,
    verified against the lab's CA for the VIP's address."""
    with socket.create_connection((sitemodel.vip(), port), timeout=5) as raw:
        with tls_context().wrap_socket(raw, server_hostname=sitemodel.vip()) as conn:
            return hashlib.sha1(conn.getpeercert(binary_form=True)).hexdigest().upper()


def haproxy_servers(node: str, listener: str) -> dict[str, str]:
    """{server: status} of one listener in `node`'s HAProxy (UP, DOWN, 'UP 1/2', MAINT...)."""
    out = {}
    for row in parse_stat(haproxy_ask(node, "show stat").splitlines()) or ():
        if row.get("pxname") == listener and row.get("svname") not in ("FRONTEND", "BACKEND"):
            out[row["svname"]] = row.get("status", "")
    return out


def wait_server(node: str, listener: str, server: str, status: str, timeout: float = 30) -> float:
    """Seconds until `node`'s HAProxy reports `server` of `listener` exactly `status`."""
    _, elapsed = wait_for(f"{node}'s HAProxy to mark {listener}/{server} {status}",
                          lambda: haproxy_servers(node, listener).get(server) == status, timeout, 0.5)
    return elapsed



# --- clients that run through a whole drill ----------------------------------------------


def drop(session: Session | None, pause: float = 0.2) -> None:
    """Close a session that failed, and pause before the client reconnects."""
    if session is not None:
        session.close()
    time.sleep(pause)


class Gets(threading.Thread):
    """GET through the VIP on an API listener, a new connection each, every 50 ms; a GET that
    fails is sent once more at once. `retried`: first tries that failed; `failed`: both did.
    An answer of the API is a success whatever its status below 500: a real keystone answers
    GET / with 300 Multiple Choices (its version list); HAProxy's 503 (no server), a 502 or 504,
    a refused or cut connection are failures."""

    def __init__(self, listener: str = "keystone_internal"):
        super().__init__(daemon=True)
        self.port, self.ok, self.retried, self.failed = sitemodel.listen_port(listener), 0, 0, 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for attempt in (1, 2):
                try:
                    http_get(self.port, timeout=5)
                    answered = True
                except urllib.error.HTTPError as exc:
                    answered = exc.code < 500
                except (OSError, urllib.error.URLError):
                    answered = False
                if answered:
                    self.ok += 1
                    break
                if attempt == 1:
                    self.retried += 1
                else:
                    self.failed += 1
            self.stopping.wait(0.05)


class Client(threading.Thread):
    """A client of the VIP in one session, until stopped: step() after step(); a failed step
    closes the session and the next one opens a new one (to whichever node HAProxy picks)."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.client = name
        self.acked: list[int] = []
        self.failures = 0
        self.stopping = threading.Event()

    def step(self, session: Session) -> None:
        raise NotImplementedError

    def run(self):
        session = None
        while not self.stopping.is_set():
            try:
                if session is None:
                    session = Session()
                self.step(session)
            except (SessionClosed, OSError, ValueError):
                self.failures += 1
                drop(session)
                session = None
        drop(session, 0)


class Writer(Client):
    """Inserts rows into drills.<table>; acked: the ids of the acknowledged ones."""

    def __init__(self, table: str, name: str):
        super().__init__(name)
        self.table = table

    def step(self, session):
        _, ident = write(session, self.table, self.client, timeout=5)
        self.acked.append(ident)


def refuses(address: str, port: int, via: str | None = None) -> bool:
    """Whether `address`:`port` refuses a TCP connection (nothing listens), asked from this host
    or, `via` a node, from inside it: the host firewall drops this host's packets to a node's
    API ports, so from here a closed API port only times out. A timeout is no refusal."""
    if via:
        probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{int(port)}' 2>&1; echo rc=$?"
        return "Connection refused" in exec_(via, ["bash", "-c", probe], timeout=30).stdout
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False
