"""The soak's workload clients: each a thread that records every operation it sends through a
history.Recorder (invoke before sending, ok / fail / info when the outcome is known). The
orchestration (how many of each, the nemesis, `make soak`) is elsewhere; nothing here has
run against the lab yet.

    list-append  MariaDB through the VIP: soak.lists (k, vals as text "1,5,9"); a transaction
                 reads some keys and appends unique elements to others (Jepsen's Elle);
                 keys rotate after APPENDS_PER_KEY appends, and final_reads() reads them all
    bank         soak.bank (id, balance): transfers in a transaction, reads of every account
                 in one statement (one snapshot); the total is constant
    amqp         a publisher with publisher confirms and a consumer with manual acks on the
                 quorum queue QUEUE, connecting to the controllers as oslo.messaging does (its
                 transport_url lists every node); needs pika (PyPI 1.4; Debian 12: python3-pika 1.2.0),
                 imported only when these clients run, so the checker needs no dependency
    keystone     token issue and project create+delete through the VIP (lab/keystone.py, the
                 lab's keystone backend: make keystone): f "api", value {"call": ...}

Outcomes from MariaDB (sql_outcome): the mysql client stops at the first error and closes the
connection, so a server error (ERROR 1xxx: deadlock, certification failure, not ready) means
the transaction was rolled back: fail; a lost connection or no answer (ERROR 2xxx, a timeout)
may have come after the commit: info. The statement's last SELECT reads user variables only,
so it cannot fail on the server after the COMMIT.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import random
import re
import threading
import time

from config.defaults import DEFAULTS
from tests.soak.history import Recorder

DATABASE = "soak"
QUEUE = "soak"
ACTIVE_KEYS = 8  # keys in use at a time
APPENDS_PER_KEY = 128  # then the key retires and a new one takes its place
MICRO_OPS = (1, 4)  # reads and appends per transaction


# --- SQL (pure) ------------------------------------------------------------------------------


def prepare_sql(accounts: dict[str, int]) -> list[str]:
    """The statements that make fresh soak tables, the bank with `accounts` {id: balance}."""
    rows = ", ".join(f"({int(a)}, {int(b)})" for a, b in accounts.items())
    return [f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
            f"DROP TABLE IF EXISTS {DATABASE}.lists, {DATABASE}.bank",
            f"CREATE TABLE {DATABASE}.lists (k BIGINT PRIMARY KEY, vals MEDIUMTEXT NOT NULL) ENGINE=InnoDB",
            f"CREATE TABLE {DATABASE}.bank (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
            f"INSERT INTO {DATABASE}.bank VALUES {rows}"]


def txn_sql(micro: list) -> str:
    """One line of SQL for a list-append transaction: micro-ops in order, each read into a user
    variable, then one result line `ok|<read 1>|<read 2>...` (a read: "1,5,9", "" when absent).
    Reads lock (share mode): with InnoDB's plain snapshot reads, REPEATABLE READ allows write
    skew (G2) by design; with locking reads the single-writer path is serializable, so any
    cycle the checker finds is a fault, not the isolation level."""
    parts, reads = ["START TRANSACTION"], []
    for i, (f, k, v) in enumerate(micro):
        if f == "r":
            parts += [f"SET @r{i} = NULL", f"SELECT vals INTO @r{i} FROM {DATABASE}.lists WHERE k = {int(k)} LOCK IN SHARE MODE"]
            reads.append(f"IFNULL(@r{i}, '')")
        else:
            parts.append(f"INSERT INTO {DATABASE}.lists (k, vals) VALUES ({int(k)}, '{int(v)}') "
                         f"ON DUPLICATE KEY UPDATE vals = CONCAT(vals, ',', '{int(v)}')")
    return "; ".join(parts + ["COMMIT", f"SELECT CONCAT_WS('|', 'ok', {', '.join(reads) or chr(39) * 2})"])


def txn_result(micro: list, line: str) -> list:
    """The completed micro-ops: each read filled in from the result line of txn_sql."""
    fields = line.split("|")
    if fields[0] != "ok" or len(fields) - 1 != max(1, sum(1 for m in micro if m[0] == "r")):
        raise ValueError(f"unexpected answer to a list-append transaction: {line[:200]!r}")
    values = iter(fields[1:])
    return [[f, k, [int(e) for e in next(values).split(",") if e]] if f == "r" else [f, k, v] for f, k, v in micro]


def transfer_sql(a: str, b: str, amount: int) -> str:
    return (f"START TRANSACTION; UPDATE {DATABASE}.bank SET balance = balance - {int(amount)} WHERE id = {int(a)}; "
            f"UPDATE {DATABASE}.bank SET balance = balance + {int(amount)} WHERE id = {int(b)}; COMMIT; SELECT 'ok'")


def sync_wait() -> str:
    """What the deploy tells the services to set (mysql_wsrep_sync_wait: the site's
    services_wsrep_sync_wait), as a deploy run from here sees the lab's data (HA_LAB_DATA over
    the defaults). Read without the lab's nodes: the unit tier runs with no lab."""
    data = json.loads(os.environ.get("HA_LAB_DATA") or "{}")
    return str(data.get("services_wsrep_sync_wait", DEFAULTS["services_wsrep_sync_wait"]))


BANK_READ_SQL = f"SELECT GROUP_CONCAT(CONCAT(id, ':', balance) ORDER BY id) FROM {DATABASE}.bank"


def bank_result(line: str) -> dict[str, int]:
    """{account: balance} from "0:100,1:97,..."."""
    try:
        return {a: int(b) for a, b in (pair.split(":") for pair in line.split(","))}
    except ValueError:
        raise ValueError(f"unexpected answer to a bank read: {line[:200]!r}") from None


def expect_ok(line: str, value):
    """`value` when the answer is "ok" (the COMMIT went through)."""
    if line != "ok":
        raise ValueError(f"unexpected answer to a transfer: {line[:200]!r}")
    return value


def sql_outcome(error: str) -> str:
    """fail when the server refused (the transaction was rolled back), else info."""
    m = re.search(r"ERROR (\d{4})", error)
    return "fail" if m and m.group(1).startswith("1") else "info"


# --- list-append keys ------------------------------------------------------------------------


class Keys:
    """The keys in use and unique elements, shared by the list-append clients: a key retires
    after APPENDS_PER_KEY appends (short lists, many keys, as Elle does)."""

    def __init__(self, active: int = ACTIVE_KEYS, per_key: int = APPENDS_PER_KEY):
        self.lock, self.per_key = threading.Lock(), per_key
        self.active, self.used = list(range(active)), list(range(active))
        self.appends = dict.fromkeys(self.active, 0)
        self.elements = itertools.count(1)

    def transaction(self, rng: random.Random) -> list:
        with self.lock:
            micro = []
            for _ in range(rng.randint(*MICRO_OPS)):
                k = rng.choice(self.active)
                if rng.random() < 0.5:
                    micro.append(["r", k, None])
                    continue
                micro.append(["append", k, next(self.elements)])
                self.appends[k] += 1
                if self.appends[k] >= self.per_key:
                    new = max(self.used) + 1
                    self.active[self.active.index(k)] = new
                    self.used.append(new)
                    self.appends[new] = 0
            return micro


# --- clients ---------------------------------------------------------------------------------


class Workload(threading.Thread):
    """A client thread until stop(): step() after step(); `pause` s between steps."""

    def __init__(self, rec: Recorder, name: str, seed: int, pause: float = 0.05):
        super().__init__(daemon=True, name=name)
        self.rec, self.process, self.rng, self.pause = rec, name, random.Random(f"{seed}/{name}"), pause
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopping.is_set():
            self.step()
            self.stopping.wait(self.pause)


class SqlWorkload(Workload):
    """A client with one long-lived session through the VIP (lab.clients.Session), reopened
    after a failure; an operation is recorded only once a session is open."""

    session = None

    def statement(self, op_f: str, invoked, sql: str, parse) -> None:
        from lab.clients import Session  # the lab's client: imported when the soak runs
        from lab.waits import SessionClosed
        try:
            if self.session is None:
                self.session = Session()
                # as oslo.db does with the deploy's mysql_wsrep_sync_wait (Site.client_strings)
                self.session.query(f"SET SESSION wsrep_sync_wait = {sync_wait()}; SELECT 1")
        except (SessionClosed, OSError):
            self.session = None
            time.sleep(0.2)
            return
        op = self.rec.invoke(self.process, op_f, invoked)
        try:
            self.rec.ok(op, parse(self.session.query(sql, timeout=10)))
        except (SessionClosed, OSError, ValueError) as exc:
            (self.rec.fail if sql_outcome(str(exc)) == "fail" else self.rec.info)(op, str(exc))
            self.session.close()
            self.session = None


class ListAppend(SqlWorkload):
    def __init__(self, rec, name, seed, keys: Keys):
        super().__init__(rec, name, seed)
        self.keys = keys

    def step(self):
        micro = self.keys.transaction(self.rng)
        self.statement("txn", micro, txn_sql(micro), lambda line: txn_result(micro, line))


class Bank(SqlWorkload):
    def __init__(self, rec, name, seed, accounts: list[str]):
        super().__init__(rec, name, seed)
        self.accounts = accounts

    def step(self):
        if self.rng.random() < 0.5:
            self.statement("read", None, BANK_READ_SQL, bank_result)
        else:
            a, b = self.rng.sample(self.accounts, 2)
            amount = self.rng.randint(1, 5)
            transfer = {"from": a, "to": b, "amount": amount}
            self.statement("transfer", transfer, transfer_sql(a, b, amount), lambda line: expect_ok(line, transfer))


def final_reads(rec: Recorder, keys: Keys, chunk: int = 50) -> None:
    """After the workloads stopped and the faults healed: a read of every key ever used (the
    lost-append check needs a read after each acknowledgement)."""
    client = ListAppend(rec, "final", 0, keys)
    for i in range(0, len(keys.used), chunk):
        micro = [["r", k, None] for k in keys.used[i:i + chunk]]
        client.statement("txn", micro, txn_sql(micro), lambda line, micro=micro: txn_result(micro, line))


def _pika():
    """pika, imported when an AMQP client runs (with its exceptions module)."""
    importlib.import_module("pika.exceptions")
    return importlib.import_module("pika")


def amqp_parameters():
    """pika ConnectionParameters for each controller (as oslo.messaging's transport_url)."""
    pika = _pika()
    from lab import sitemodel
    site = sitemodel.site()
    credentials = pika.PlainCredentials(site.data["rabbitmq_user"], sitemodel.secret("rabbitmq_password"))
    return [pika.ConnectionParameters(c.address, site.data["rabbitmq_port"], site.data["rabbitmq_vhost"], credentials,
                                      connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10)
            for c in site.controllers]


class AmqpWorkload(Workload):
    """A BlockingConnection to the first controller that answers, declared quorum queue."""

    channel = None

    def connect(self):
        pika = _pika()
        params = amqp_parameters()
        self.rng.shuffle(params)
        self.channel = pika.BlockingConnection(params).channel()
        self.channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        return pika

    def drop(self):
        try:
            if self.channel is not None:
                self.channel.connection.close()
        except Exception:  # noqa: BLE001 (closing a connection that already failed)
            pass
        self.channel = None
        time.sleep(0.2)


class Publisher(AmqpWorkload):
    """Publishes message ids (persistent, mandatory) with publisher confirms: ok when the
    broker confirmed, info on a nack or a lost connection (the message may be queued)."""

    messages = itertools.count(1)

    def step(self):
        pika = _pika()
        try:
            if self.channel is None:
                self.connect()
                self.channel.confirm_delivery()
        except (pika.exceptions.AMQPError, OSError):
            self.drop()
            return
        msg = next(self.messages)
        op = self.rec.invoke(self.process, "publish", msg)
        try:
            self.channel.basic_publish("", QUEUE, str(msg).encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)
            self.rec.ok(op)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.rec.info(op, f"{type(exc).__name__}: {exc}")
            self.drop()


class Consumer(AmqpWorkload):
    """Consumes with manual acks: ok once the ack is sent ({"msg", "redelivered"}); after
    stop(), drains: ok "drain" once the queue is empty and nothing came for `quiet` s."""

    quiet = 10.0

    def step(self):
        pika = _pika()
        try:
            if self.channel is None:
                self.connect()
                self.channel.basic_qos(prefetch_count=10)
            for method, _, body in self.channel.consume(QUEUE, auto_ack=False, inactivity_timeout=1):
                if method is None:
                    return
                op = self.rec.invoke(self.process, "consume")
                try:
                    self.channel.basic_ack(method.delivery_tag)
                    self.rec.ok(op, {"msg": int(body), "redelivered": bool(method.redelivered)})
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self.rec.info(op, f"{type(exc).__name__}: {exc}")
                    raise
                if self.stopping.is_set():
                    return
        except (pika.exceptions.AMQPError, OSError):
            self.drop()

    def drain(self, timeout: float = 300) -> bool:
        """Called after the thread ended: consume until empty and quiet; records the drain."""
        pika = _pika()
        op = self.rec.invoke(self.process, "drain")
        deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline:
            seen = len(self.rec.records)
            self.step()
            if len(self.rec.records) != seen:
                quiet_since = time.monotonic()
            try:
                left = self.channel.queue_declare(QUEUE, passive=True).method.message_count if self.channel else None
            except (pika.exceptions.AMQPError, OSError):
                left = None
                self.drop()
            if left == 0 and time.monotonic() - quiet_since >= self.quiet:
                self.rec.ok(op, {"remaining": 0})
                return True
        self.rec.fail(op, f"the queue was not empty and quiet within {timeout}s")
        return False


class Keystone(Workload):
    """keystone through the VIP (lab/keystone.py's client, the lab's keystone backend): a token
    issued, or a project created and deleted (a write through keystone's database). Each call
    is recorded as f "api" with {"call": name}: ok when keystone answered as expected, fail
    when it answered otherwise (a 4xx/5xx: it did not do it), info when no answer came."""

    client = None

    def call(self, name: str) -> None:
        from lab.keystone import Client  # the lab's keystone: imported when the soak runs
        if self.client is None:
            self.client = Client(timeout=10)
        if name == "token":
            self.client.issue_token()
        else:
            self.client.delete_project(self.client.create_project())

    def step(self):
        from lab.keystone import KeystoneError
        name = self.rng.choice(("token", "project"))
        op = self.rec.invoke(self.process, "api", {"call": name})
        try:
            self.call(name)
            self.rec.ok(op)
        except KeystoneError as exc:
            self.rec.fail(op, str(exc))
            self.client = None
        except (OSError, ValueError) as exc:
            self.rec.info(op, f"{type(exc).__name__}: {exc}")
            self.client = None
