"""The site's typed schema: every key a site, a host or a catalogue entry sets, and every
secret, with its type, its range or pattern and a one-line meaning.

preflight.check() applies it before anything renders. A value is refused unless it has the
exact type (an int is never a bool or a string: `True` and "5" are not ints) and passes its
range or pattern; every pattern refuses control characters, so nothing read from the site
can add a line to a rendered file. Patterns of values that reach a shell on the
controllers (names, users, paths) admit no shell metacharacter. Cross-key rules (the VIP
inside the network, port clashes, duplicates) are preflight's.

    SITE[key].why(value)  -> None, or why the value is wrong (one line, the value shown)
    SITE[key].expect      -> what a valid value looks like (the fix)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

from config import debversion
from config.defaults import DEFAULTS, HOST_KEYS, HOST_OPTIONAL_KEYS

# Control characters: C0, DEL and C1. None may reach a rendered file.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def show(value) -> str:
    """A value as an error line shows it: ascii() (control characters and every non-ASCII
    character escaped, so a homoglyph such as a Cyrillic 'a' (\u0430) is visible), cut short."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Kind:
    """A type with its range or pattern: `why(value)` says what is wrong, None if nothing."""

    expect: str  # what a valid value looks like, e.g. "an integer in 1-65535"
    why: Callable[[object], str | None]
    items: tuple[Kind, Kind] | None = None  # a dict's (key kind, value kind), checked item by item


@dataclass(frozen=True)
class Rule:
    kind: Kind
    meaning: str

    @property
    def expect(self) -> str:
        return self.kind.expect


def integer(lo: int, hi: int, unit: str = "") -> Kind:
    def why(v):
        if type(v) is not int:
            return f"{show(v)} is not an integer"
        if not lo <= v <= hi:
            return f"{v} is outside {lo}-{hi}"
        return None

    return Kind(f"an integer in {lo}-{hi}{unit}", why)


PORT = integer(1, 65535)
COUNT = integer(1, 1000)


def boolean() -> Kind:
    return Kind("True or False", lambda v: None if type(v) is bool else f"{show(v)} is not a boolean (True or False, unquoted)")


def choice(*allowed) -> Kind:
    def why(v):
        # `True in (0, 1, 2)` holds in Python: compare the type too.
        if any(type(v) is type(a) and v == a for a in allowed):
            return None
        return f"{show(v)} is not one of {', '.join(map(str, allowed))}"

    return Kind(f"one of {', '.join(map(str, allowed))}", why)


def text(pattern: str, expect: str) -> Kind:
    """A string matching `pattern` in full (which admits no control character)."""
    rx = re.compile(pattern)

    def why(v):
        if type(v) is not str:
            return f"{show(v)} is not a string"
        if CONTROL.search(v):
            return f"{show(v)} holds a control character (newline, tab, NUL...)"
        if not rx.fullmatch(v):
            return f"{show(v)} is not {expect}"
        return None

    return Kind(expect, why)


def either(*kinds: Kind) -> Kind:
    """The first kind's message when none accepts the value."""

    def why(v):
        reasons = [k.why(v) for k in kinds]
        if None in reasons:
            return None
        if isinstance(v, str) and CONTROL.search(v):
            return f"{show(v)} holds a control character (newline, tab, NUL...)"
        return f"{show(v)} is not {' or '.join(k.expect for k in kinds)}"

    return Kind(" or ".join(k.expect for k in kinds), why)


def optional(kind: Kind) -> Kind:
    return Kind(f"None or {kind.expect}", lambda v: None if v is None else kind.why(v))


def address() -> Kind:
    def why(v):
        if type(v) is not str:
            return f"{show(v)} is not a string"
        try:
            ipaddress.ip_address(v)
        except ValueError:
            return f"{show(v)} is not an IP address"
        return None

    return Kind("an IP address such as 100.2.30.41", why)


def netmask_form(v: str) -> str | None:
    """Why `v`, a network Python reads, is not in the address/prefix-length form nft takes
    (10.0.0.0/255.255.255.0 is read as /24, and nft refuses the file on every host), or None."""
    if v.rpartition("/")[2].isdigit():
        return None
    return f"{show(v)} gives a netmask, not a prefix length: nft refuses it"


def network() -> Kind:
    def why(v):
        if type(v) is not str or "/" not in v:
            return f"{show(v)} is not a network address/prefix"
        try:
            net = ipaddress.ip_network(v, strict=False)
        except ValueError:
            return f"{show(v)} is not a network address/prefix"
        if reason := netmask_form(v):
            return f"{reason} (write {net.with_prefixlen})"
        if net.num_addresses < 4:
            return f"{v} has no room for controllers and a VIP"
        return None

    return Kind("address/prefix, e.g. 100.2.30.0/24", why)


def ipv4_network() -> Kind:
    """An IPv4 network of any size (a single host is /32), e.g. a client network."""
    def why(v):
        try:
            net = ipaddress.ip_network(v, strict=False) if type(v) is str and "/" in v else None
        except ValueError:
            net = None
        if not net or net.version != 4:
            return f"{show(v)} is not an IPv4 network address/prefix"
        if reason := netmask_form(v):
            return f"{reason} (write {net.with_prefixlen})"
        return None

    return Kind("IPv4 address/prefix, e.g. 192.0.2.0/24 or 192.0.2.7/32", why)


def mapping(keys: Kind, values: Kind, expect: str) -> Kind:
    """A dict of checked keys and values; problems() names the item (haproxy_timeouts.connect)."""

    def why(v):
        if type(v) is not dict:
            return f"{show(v)} is not a dict"
        for k, x in v.items():
            if (reason := keys.why(k)) is not None:
                return f"unknown name: {reason}"
            if (reason := values.why(x)) is not None:
                return f"{k}: {reason}"
        return None

    return Kind(expect, why, (keys, values))


def sequence(item: Kind, expect: str) -> Kind:
    def why(v):
        if type(v) not in (list, tuple):
            return f"{show(v)} is not a list"
        for x in v:
            if (reason := item.why(x)) is not None:
                return reason
        return None

    return Kind(expect, why)


def pairs(keys: Kind, values: Kind, expect: str) -> Kind:
    """A list of (key, value) pairs, as a catalogue entry's timeouts."""
    pair = Kind("a (name, value) pair", lambda p: keys.why(p[0]) or values.why(p[1])
                if type(p) in (list, tuple) and len(p) == 2 else f"{show(p)} is not a (name, value) pair")
    return sequence(pair, expect)


# --- patterns shared by several keys ------------------------------------------------------

def host_name() -> Kind:
    """RFC 1123 label, lowercase: a hostname, a RabbitMQ node name (rabbit@NAME), safe in a
    shell; not all digits (resolvers and ping read "123" as the IPv4 address 0.0.0.123) and
    not localhost (every host's name for itself: each node would reach only itself)."""
    label = text(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", "a lowercase hostname label (a-z, 0-9, inner '-', at most 63)")

    def why(v):
        if (reason := label.why(v)) is not None:
            return reason
        if v.isdigit():
            return f"{show(v)} is all digits: resolvers read it as an IPv4 address"
        if v == "localhost":
            return "'localhost' is every machine's name for itself"
        return None

    return Kind(f"{label.expect}, not all digits, not localhost", why)


HOST_NAME = host_name()
# A file on the machine that deploys (read there, never on a controller's command line).
LOCAL_FILE = text(r"[A-Za-z0-9_./+-]{1,4096}", "a file path on this machine (A-Z a-z 0-9 _ . / + -)")
# A Linux interface name (IFNAMSIZ 16 with the NUL): no '/', ':' or whitespace.
INTERFACE = text(r"(?!\.\.?$)[A-Za-z0-9_.-]{1,15}", "an interface name of at most 15 of A-Z a-z 0-9 _ . -")
# Account names: also written unquoted on rabbitmqctl and haproxy command lines.
ACCOUNT = text(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", "an account name of at most 32 of A-Z a-z 0-9 _ . - (no leading . or -)")
NAME = text(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", "a name of A-Z a-z 0-9 _ . - (no leading . or -)")
PATH = text(r"/(?!.*/\.\.?(/|$))[A-Za-z0-9_./-]*[A-Za-z0-9_]", "an absolute path of A-Z a-z 0-9 _ . - / (no .. part)")
# HAProxy time: an integer (milliseconds) or digits with a unit it knows; HAProxy refuses a
# timer above 2^31-1 ms (~24.8 days).
TIME_LIMIT_MS = 2**31 - 1
TIME_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def haproxy_time() -> Kind:
    with_unit = text(r"[1-9][0-9]*(us|ms|s|m|h|d)", 'a time such as "10s", "1m", "500ms"')
    plain = integer(1, TIME_LIMIT_MS)
    expect = f"{plain.expect} (milliseconds) or {with_unit.expect}, at most {TIME_LIMIT_MS} ms (~24.8 days)"

    def why(v):
        if with_unit.why(v) is None:
            unit = re.fullmatch(r"[0-9]+(.*)", v).group(1)
            if int(v[: -len(unit)]) * TIME_UNITS_MS[unit] > TIME_LIMIT_MS:
                return f"{show(v)} is above HAProxy's limit of {TIME_LIMIT_MS} ms (~24.8 days)"
            return None
        if plain.why(v) is None:
            return None
        if type(v) is int and v > TIME_LIMIT_MS:
            return f"{v} ms is above HAProxy's limit of {TIME_LIMIT_MS} ms (~24.8 days)"
        return either(plain, with_unit).why(v)

    return Kind(expect, why)


HAPROXY_TIME = haproxy_time()
HAPROXY_TIMEOUTS = ("check", "client", "client-fin", "connect", "http-keep-alive", "http-request", "queue",
                    "server", "server-fin", "tarpit", "tunnel")
TIMEOUT_NAME = choice(*HAPROXY_TIMEOUTS)
SYSLOG_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
                     "ftp", "ntp", "audit", "alert", "cron2", *(f"local{i}" for i in range(8)))
SERVICE_NAME = text(r"[a-z0-9][a-z0-9_-]{0,63}", "a listener name of a-z 0-9 _ -")
# One HAProxy directive's arguments (an option, an http-request rule): printable, no '#'.
DIRECTIVE = text(r"[a-z][a-z0-9-]*( [ -\"$-~]+)?", "one HAProxy directive's words, printable ASCII without '#'")
BALANCE = text(r"(roundrobin|static-rr|leastconn|first|source|random(\([0-9]+\))?|uri( (whole|len [0-9]+|depth [0-9]+))*"
               r"|url_param [A-Za-z0-9_-]+|hdr\([A-Za-z0-9_-]+\)|rdp-cookie(\([A-Za-z0-9_]+\))?)",
               "a HAProxy balance algorithm (roundrobin, leastconn, source, ...)")


# systemd OnCalendar (systemd.time(7)), by shape: a shorthand (daily, hourly...), or
# [weekdays] [[year-]month-day] [hour:minute[:second]] [UTC], each field *, a number, a range
# a..b, a list a,b, with /step; hours 0-23, minutes and seconds 0-59.
_WEEKDAY = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*(\.\.(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*)?"
_FIELD = r"(\*|[0-9]+(\.\.[0-9]+)?)(/[0-9]+)?"
_FIELDS = rf"{_FIELD}(,{_FIELD})*"
_DATE = rf"({_FIELDS}-)?{_FIELDS}-{_FIELDS}"
_TIME = rf"(?P<h>{_FIELDS}):(?P<m>{_FIELDS})(:(?P<s>{_FIELDS}))?"
CALENDAR_SHORTHANDS = ("minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually")
_CALENDAR = re.compile(rf"({'|'.join(CALENDAR_SHORTHANDS)})|({_WEEKDAY}(,{_WEEKDAY})*)?( ?{_DATE})?( ?{_TIME})?( UTC)?")


def calendar() -> Kind:
    """A systemd OnCalendar expression, checked for shape (systemd-analyze calendar, on a
    controller, is the last word)."""
    shape = text(_CALENDAR.pattern, 'a systemd OnCalendar expression such as "daily" or "*-*-* 01:00:00"')

    def why(v):
        if (reason := shape.why(v)) is not None:
            return reason
        m = _CALENDAR.fullmatch(v)
        if not v.strip() or v != v.strip() or "  " in v:
            return f"{show(v)} is not a systemd OnCalendar expression"
        for part, top in (("h", 23), ("m", 59), ("s", 59)):
            numbers = [int(n) for n in re.findall(r"(?<![/0-9])[0-9]+", m.group(part) or "")]
            if any(n > top for n in numbers):
                return f"{show(v)} has {dict(h='an hour', m='a minute', s='a second')[part]} outside 0-{top}"
        return None

    return Kind(shape.expect, why)


def log_target() -> Kind:
    """HAProxy `log` target: address:port, a unix socket path, stdout or stderr."""

    def why(v):
        if (reason := text(r"[0-9A-Fa-f.:\[\]]+:[0-9]{1,5}|/[A-Za-z0-9_./-]+|stdout|stderr", "x").why(v)) is not None:
            return reason if "control" in reason or "string" in reason else f"{show(v)} is not a log target"
        if v[0] not in "/s":
            host, _, port = v.rpartition(":")
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                return f"{show(v)} is not address:port"
            if not 1 <= int(port) <= 65535:
                return f"{show(v)} has a port outside 1-65535"
        return None

    return Kind('address:port (e.g. "127.0.0.1:514"), a unix socket path, stdout or stderr', why)


# --- the site (group data) -------------------------------------------------------------------

SITE: dict[str, Rule] = {
    "internal_network": Rule(network(), "the controllers' subnet; the VIP and every node address are inside it"),
    "vip": Rule(address(), "the address HAProxy listens on, held by keepalived"),
    "vip_interface": Rule(INTERFACE, "the interface that carries the internal network and the VIP"),
    "external_vip": Rule(optional(address()), "the public endpoints' VIP (None: none); public listeners only, TLS only"),
    "external_vip_interface": Rule(optional(INTERFACE), "the interface the external VIP is put on (None: vip_interface)"),
    "external_network": Rule(optional(network()), "the external VIP's subnet, for its prefix (None: internal_network)"),
    "keepalived_external_router_id": Rule(optional(integer(1, 255)), "the external VIP's VRRP router id, not the internal one's"),
    "keepalived_virtual_router_id": Rule(integer(1, 255), "VRRP router id, unique on the segment"),
    "keepalived_advert_int": Rule(integer(1, 255, " seconds"), "seconds between VRRP advertisements"),
    "keepalived_check_interval": Rule(integer(1, 3600, " seconds"), "seconds between check_alive runs"),
    "keepalived_check_fall": Rule(COUNT, "failed checks before the node gives up the VIP"),
    "keepalived_check_rise": Rule(COUNT, "passed checks before the node may take the VIP again"),
    "keepalived_unicast": Rule(boolean(), "VRRP to each peer's address (unicast_peer) instead of multicast"),
    "keepalived_check_script": Rule(PATH, "where check_alive is installed and what keepalived runs"),
    "keepalived_track_haproxy_unit": Rule(boolean(), "the VIP leaves a node the moment its HAProxy unit stops or dies"),
    "keepalived_serve_check": Rule(boolean(), "the VIP leaves a controller that cannot serve or sees a minority (check_serving)"),
    "keepalived_serve_listeners": Rule(sequence(SERVICE_NAME, "a list of listener names"),
                                       "API listeners that must have a usable server for a controller to hold the VIP"),
    "keepalived_serve_interval": Rule(integer(1, 60, " seconds"), "seconds between check_serving runs"),
    "keepalived_serve_fall": Rule(COUNT, "failed check_serving runs before the node gives up the VIP"),
    "keepalived_serve_rise": Rule(COUNT, "passed check_serving runs before the node may take the VIP again"),
    "keepalived_serve_peer_timeout_ms": Rule(integer(50, 10_000, " ms"), "how long check_serving waits for a peer's answer"),
    "keepalived_serve_last_resort": Rule(integer(1, 3600, " seconds"),
                                         "seconds without any VIP holder before a minority controller takes the VIP again"),
    "haproxy_maxconn": Rule(integer(1, 10_000_000), "HAProxy's global maxconn, a plain integer (no 4k)"),
    "haproxy_log_target": Rule(log_target(), "where HAProxy sends its logs"),
    "haproxy_log_facility": Rule(choice(*SYSLOG_FACILITIES), "syslog facility of HAProxy's logs"),
    "haproxy_stats_socket": Rule(PATH, "HAProxy's admin socket (check_alive and the health report use it)"),
    "haproxy_stats_port": Rule(PORT, "the stats page's port on each node's address"),
    "haproxy_stats_user": Rule(ACCOUNT, "the stats page's user (a user of the userlist in its own file)"),
    "haproxy_retries": Rule(integer(0, 100), "connection retries to a server before redispatch"),
    "haproxy_server_keepalive": Rule(boolean(), "option srvtcpka in the defaults sections"),
    "haproxy_timeouts": Rule(mapping(TIMEOUT_NAME, HAPROXY_TIME, "{timeout name: time}"),
                             "the defaults sections' timeouts, merged key by key into the defaults"),
    "haproxy_retry_on": Rule(text(r"(|[a-z0-9-]+( [a-z0-9-]+)*)", "HAProxy retry-on keywords separated by spaces, or \"\""),
                             "what makes HAProxy send a request again to another server (\"\": connection failures only)"),
    "haproxy_redispatch": Rule(integer(-100, 100), "option redispatch N: every Nth retry goes to another server (-1: the last)"),
    "haproxy_error_limit": Rule(integer(0, 100), "connection errors in a row that mark a server down (0: only checks do)"),
    "haproxy_check_inter": Rule(HAPROXY_TIME, "time between HAProxy's health checks of a server (ms, or with a unit)"),
    "haproxy_check_rise": Rule(COUNT, "passed checks before a server is UP"),
    "haproxy_check_fall": Rule(COUNT, "failed checks before a server is DOWN"),
    "haproxy_tls": Rule(boolean(), "TLS on the VIP for the HTTP APIs; False serves them in clear text"),
    "haproxy_tls_pem_path": Rule(PATH, "where each controller keeps the PEM bundle (secret haproxy_tls_pem) HAProxy reads"),
    "haproxy_tls_ciphers": Rule(text(r"[A-Za-z0-9_+:!.-]{1,2000}", "an OpenSSL cipher list (NAME:NAME:...)"),
                                "TLS 1.2 ciphers of every ssl bind (ssl-default-bind-ciphers)"),
    "haproxy_tls_ciphersuites": Rule(text(r"[A-Za-z0-9_:]{1,2000}", "TLS 1.3 suites (TLS_AES_128_GCM_SHA256:...)"),
                                     "TLS 1.3 suites of every ssl bind (ssl-default-bind-ciphersuites)"),
    "haproxy_tls_options": Rule(text(r"[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*", "bind options separated by spaces"),
                                "options of every ssl bind (ssl-default-bind-options)"),
    "haproxy_hsts_max_age": Rule(integer(0, 315_360_000, " s"), "Strict-Transport-Security max-age on the HTTPS listeners (0: none)"),
    "haproxy_tls_expiry_warn_days": Rule(integer(0, 3650, " days"), "days before the certificate's expiry the health report warns (0: never)"),
    "haproxy_legacy_services": Rule(boolean(), "keep the article's keystone_admin 35357 and glance_registry 9191"),
    "services": Rule(mapping(SERVICE_NAME, Kind("a dict of fields", lambda v: None if type(v) is dict else f"{show(v)} is not a dict of fields"),
                             "{service: {field: value}}"),
                     "per-listener changes and site services (fields: config/catalogue.py)"),
    "maintenance_drain_seconds": Rule(integer(0, 3600, " seconds"),
                                      "seconds a controller's API servers drain before maint (maintenance out)"),
    "galera_cluster_name": Rule(NAME, "wsrep_cluster_name, the same on every node"),
    "galera_sst_method": Rule(choice("mariabackup", "rsync"), "how a joining node gets the data"),
    "galera_gcache_size": Rule(text(r"[1-9][0-9]{0,5}[MG]", "a size in M or G (e.g. 512M, 1G)"),
                               "Galera's write-set cache (gcache.size): what a node rejoining by IST may have missed"),
    "galera_suspect_timeout": Rule(integer(2, 14, " seconds"),
                                   "seconds of silence after which Galera suspects a member dead (evs.suspect_timeout; "
                                   "below evs.inactive_timeout, 15 s): how long every commit waits for a member that lost power"),
    "services_wsrep_sync_wait": Rule(integer(0, 15), "the OpenStack services' wsrep_sync_wait (oslo.db's "
                                     "mysql_wsrep_sync_wait, printed by the deploy): 1 causal reads, 0 off"),
    "mariadb_port": Rule(PORT, "MariaDB's port on the node address and the database listener's on the VIP"),
    "mariadb_check_method": Rule(choice("mysql-check", "httpchk"), "HAProxy's database health check"),
    "mariadb_check_port": Rule(PORT, "the port HAProxy's database check asks"),
    "mariadb_check_user": Rule(ACCOUNT, "the account mysql-check logs in as"),
    "mariadb_check_inter": Rule(HAPROXY_TIME, "time between the database listener's checks"),
    "mariadb_check_fall": Rule(COUNT, "failed database checks before the writer is moved"),
    "mariadb_check_timeout": Rule(HAPROXY_TIME, "how long one database check may take"),
    "mariadb_connect_timeout": Rule(HAPROXY_TIME, "how long a connection to a database server may take to be made"),
    "mariadb_admin_user": Rule(ACCOUNT, "MariaDB's admin account"),
    "mariadb_max_connections": Rule(integer(1, 100_000), "MariaDB max_connections"),
    "mariadb_max_connect_errors": Rule(integer(1, 2**64 - 1), "MariaDB max_connect_errors: broken handshakes before a host (a HAProxy) is blocked"),
    "mariadb_innodb_buffer_pool_size": Rule(either(integer(5 * 2**20, 2**50), text(r"[1-9][0-9]*[KMGTkmgt]?", 'a size such as "512M"')),
                                            "InnoDB buffer pool: bytes, or digits with K, M, G or T"),
    "mariadb_innodb_flush_log_at_trx_commit": Rule(choice(0, 1, 2), "1: every commit flushed (durable)"),
    "galera_tls": Rule(boolean(), "TLS for Galera's replication, IST and SST (certificates: peer_tls_ca_file, host key tls_node_pem)"),
    "rabbitmq_tls": Rule(boolean(), "TLS for RabbitMQ's Erlang distribution (clustering and CLI), same certificates as galera_tls"),
    "peer_tls_ca_file": Rule(optional(LOCAL_FILE), "the CA certificate (PEM) of the controllers' certificates, on this machine"),
    "rabbitmq_port": Rule(integer(1, 45535), "AMQP port on the node address (the Erlang distribution port is this + 20000)"),
    "rabbitmq_amqp_tls": Rule(boolean(), "AMQP over TLS for the OpenStack services on rabbitmq_amqp_tls_port (certificates as rabbitmq_tls)"),
    "rabbitmq_amqp_tls_port": Rule(PORT, "the AMQP over TLS listener's port on the node address (rabbitmq_amqp_tls)"),
    "rabbitmq_amqp_plain": Rule(boolean(), "keep the plain AMQP listener (rabbitmq_port); False only with rabbitmq_amqp_tls"),
    "rabbitmq_amqp_tls_verify_peer": Rule(boolean(), "require a client certificate signed by the CA (rabbitmq_amqp_tls)"),
    "rabbitmq_management_port": Rule(PORT, "management API's port on the node address and its listener's on the VIP"),
    "rabbitmq_partition_handling": Rule(choice("pause_minority", "autoheal", "ignore"), "what a partitioned node does"),
    "rabbitmq_heartbeat": Rule(integer(5, 600, " s"), "the AMQP heartbeat timeout the brokers propose, printed as "
                               "oslo.messaging's heartbeat_timeout_threshold (below 5 s: false alarms)"),
    "rabbitmq_start_timeout": Rule(integer(60, 3600, " s"), "how long a start of rabbitmq-server may take before systemd "
                                   "(TimeoutStartSec) and the deploy kill it and start it again (the boot hang of "
                                   "rabbitmq-server#6034); below 60 s a slow but sound start after a power cut is killed, "
                                   "above an hour it bounds nothing for a start that takes seconds"),
    "rabbitmq_memory_high_watermark": Rule(
        either(Kind("a fraction in 0-1", lambda v: None if type(v) in (int, float) and 0 < v <= 1 else "no"),
               text(r"[1-9][0-9]*(k|K|kB|KB|kiB|KiB|M|MB|MiB|G|GB|GiB)?", 'a size such as "2GiB"')),
        "memory alarm threshold: a fraction of RAM, or an absolute size"),
    "rabbitmq_queue_type": Rule(choice("quorum", "mirrored"), "quorum queues, or the article's ha-all policy"),
    "rabbitmq_user": Rule(ACCOUNT, "the RabbitMQ account of the OpenStack services"),
    "rabbitmq_admin_user": Rule(ACCOUNT, "the RabbitMQ management administrator (not the services' account, not guest)"),
    "rabbitmq_monitor_user": Rule(ACCOUNT, "the health report's RabbitMQ account: tag monitoring only (not another account, not guest)"),
    "rabbitmq_vhost": Rule(NAME, "the RabbitMQ vhost of the OpenStack services"),
    "memcached_port": Rule(PORT, "memcached's port on the node address"),
    "memcached_memory_mb": Rule(integer(1, 1_048_576, " MB"), "memcached's cache size"),
    "memcached_max_connections": Rule(integer(1, 1_000_000), "memcached's connection limit"),
    "sysctl": Rule(mapping(text(r"[a-z0-9_]+(\.[A-Za-z0-9_-]+)+", "a sysctl name such as net.ipv4.tcp_retries2"),
                           either(integer(-2**63, 2**63 - 1), text(r"[A-Za-z0-9_.-]+( [A-Za-z0-9_.-]+)*", "words of A-Z a-z 0-9 _ . -")),
                           "{sysctl name: value}"),
                   "kernel settings, merged key by key into the defaults"),
    "backup_enabled": Rule(boolean(), "scheduled MariaDB backups from backup_node (False: the deploy of before)"),
    "backup_full_calendar": Rule(calendar(), "when a full backup is taken (systemd OnCalendar)"),
    "backup_incremental_calendar": Rule(optional(calendar()), "when an incremental backup is taken (systemd OnCalendar; None: fulls only)"),
    "backup_retention_days": Rule(integer(1, 3650, " days"), "days of full backups kept (the newest verified full always)"),
    "backup_node": Rule(optional(HOST_NAME), "the controller that takes the backups, never the writer (None: the last controller)"),
    "backup_dir": Rule(PATH, "where backup_node keeps the backups and their manifests"),
    "backup_copy_to": Rule(optional(text(r"([A-Za-z0-9_][A-Za-z0-9_.-]{0,31}@)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?",
                                         "a controller's name or [user@]host")),
                           "where each backup is copied: a controller, or an SSH host (None: the controller before backup_node)"),
    "backup_copy_dir": Rule(optional(PATH), "the copy's directory on backup_copy_to (None: backup_dir)"),
    "backup_compress": Rule(choice("gzip", "zstd"), "the backup stream's compressor"),
    "backup_space_margin_percent": Rule(integer(0, 1000, " %"), "free space wanted beyond the last full's size before a backup"),
    "backup_rehearsal_hosts": Rule(mapping(HOST_NAME, address(), "{host name: IPv4 address}"),
                                   "hosts (not controllers) the restore rehearsal restores a backup onto ({}: none)"),
    "package_versions": Rule(mapping(text(r"[a-z0-9][a-z0-9+.-]+", "a Debian package name (a-z 0-9 + . -)"),
                                     Kind(debversion.EXPECT, debversion.why_not), "{package: Debian version}"),
                             "exact versions of the packages the deploy installs (absent: apt's candidate, never upgraded)"),
    "monitoring_enabled": Rule(boolean(), "Prometheus, Alertmanager and the exporters on every controller (False: the deploy of before)"),
    "monitoring_networks": Rule(optional(sequence(ipv4_network(), "a list of IPv4 networks")),
                                "networks that may scrape the exporters and reach Prometheus and Alertmanager besides the controllers (None: the controllers only)"),
    "monitoring_prometheus_port": Rule(PORT, "Prometheus's port on each node's address"),
    "monitoring_alertmanager_port": Rule(PORT, "Alertmanager's port on each node's address"),
    "monitoring_alertmanager_cluster_port": Rule(PORT, "the Alertmanagers' cluster (gossip) port on each node's address"),
    "monitoring_node_exporter_port": Rule(PORT, "node-exporter's port on each node's address"),
    "monitoring_mysqld_exporter_port": Rule(PORT, "mysqld_exporter's port on each node's address"),
    "monitoring_haproxy_exporter_port": Rule(PORT, "HAProxy's built-in Prometheus exporter's port on each node's address"),
    "monitoring_rabbitmq_exporter_port": Rule(PORT, "the rabbitmq_prometheus plugin's port on each node's address"),
    "monitoring_scrape_interval": Rule(integer(1, 3600, " seconds"), "seconds between two scrapes of a target"),
    "monitoring_evaluation_interval": Rule(integer(1, 3600, " seconds"), "seconds between two evaluations of the alert rules"),
    "monitoring_group_wait": Rule(integer(0, 3600, " seconds"), "seconds Alertmanager holds a new group's first notification"),
    "monitoring_group_interval": Rule(integer(1, 86400, " seconds"),
                                      "seconds at least between two notifications of one group (another alert, or the resolved one)"),
    "monitoring_certificate_days": Rule(integer(1, 3650, " days"), "the certificate alert fires this many days before the expiry"),
    "monitoring_maintenance_hours": Rule(integer(1, 8760, " hours"), "the maintenance alert fires after a controller was out this long"),
    "monitoring_backup_schedules": Rule(integer(1, 100), "the backup alert fires when the newest backup is this many schedule periods old"),
    "monitoring_flow_control_percent": Rule(integer(1, 100, " %"), "the flow-control alert fires above this share of time paused"),
    "monitoring_webhooks": Rule(sequence(text(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~%/?=&+-]*)?", "an http:// or https:// URL"),
                                         "a list of webhook URLs"),
                                "where Alertmanager sends every alert (webhook receivers)"),
    "firewall": Rule(boolean(), "the project's nftables table: cluster ports for the controllers only, listeners for the client networks"),
    "firewall_client_networks": Rule(optional(sequence(ipv4_network(), "a list of IPv4 networks")),
                                     "networks that may use the VIP's listeners and AMQP (None: internal_network)"),
    "admin_networks": Rule(optional(sequence(ipv4_network(), "a list of IPv4 networks")),
                           "networks that may reach the stats page and the admin listeners besides the controllers (None: the controllers only)"),
    "secrets_file": Rule(optional(text(r"[^\x00-\x1f]+", "a path")), "the untracked JSON file of secrets"),
}

HOST: dict[str, Rule] = {
    "address": Rule(address(), HOST_KEYS["address"]),
    "vrrp_priority": Rule(integer(1, 254), HOST_KEYS["vrrp_priority"]),
    "tls_node_pem": Rule(LOCAL_FILE, HOST_OPTIONAL_KEYS["tls_node_pem"]),
}

# --- a catalogue entry (config/catalogue.py Service) -----------------------------------------

SERVICE: dict[str, Rule] = {
    "port": Rule(PORT, "the listener's port on the VIP"),
    "backend_port": Rule(optional(PORT), "the port on the controllers (None: the same as port)"),
    "mode": Rule(choice("http", "tcp"), "HAProxy mode"),
    "balance": Rule(optional(BALANCE), "HAProxy balance algorithm (None: roundrobin)"),
    "http_request": Rule(sequence(DIRECTIVE, "a list of http-request rules"), "`http-request` rules, in order"),
    "options": Rule(sequence(DIRECTIVE, "a list of options"), "`option` lines"),
    "timeouts": Rule(either(mapping(TIMEOUT_NAME, HAPROXY_TIME, "{timeout name: time}"),
                            pairs(TIMEOUT_NAME, HAPROXY_TIME, "[(timeout name, time), ...]")),
                     "the listener's own `timeout` lines"),
    "fall": Rule(optional(COUNT), "failed checks before DOWN, for this listener"),
    "active_backup": Rule(boolean(), "one writer: the first controller takes all, the others are backup"),
    "forwardfor": Rule(boolean(), "under the defaults section with option forwardfor"),
    "legacy": Rule(boolean(), "dropped when haproxy_legacy_services is False"),
    "tls": Rule(boolean(), "with haproxy_tls, TLS on the VIP (mode http only)"),
    "https_port": Rule(optional(PORT), "with haproxy_tls, the TLS port; `port` then only redirects to https"),
    "public": Rule(boolean(), "served on the external VIP too (TLS only); False: the internal VIP alone"),
    "admin": Rule(boolean(), "an operators' listener: reached from admin_networks and the controllers only"),
    "enabled": Rule(boolean(), "False drops the listener"),
    "description": Rule(text(r"[^\x00-\x1f]*", "one line of text"), "why the entry exists (not rendered)"),
}

# --- secrets: where each lands decides what it can carry ----------------------------------------

PRINTABLE = r"[ -~]"  # printable ASCII, space included


def pem_bundle() -> Kind:
    """A PEM bundle: a certificate and a private key, lines of printable ASCII (never shown)."""
    def why(v):
        if type(v) is not str:
            return "is not a string"
        if CONTROL.search(v.replace("\n", "")) or not v.isascii():
            return "holds a character that is neither printable ASCII nor a newline"
        if "-----BEGIN CERTIFICATE-----" not in v or not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", v):
            return "lacks a CERTIFICATE or a PRIVATE KEY block"
        return None

    return Kind("a PEM bundle: the certificate (chain) and its private key, e.g. cat site.crt site.key", why)
SECRET: dict[str, Rule] = {
    # keepalived.conf: a bare word; keepalived ends a word at whitespace, reads quotes, '#',
    # '!' (comments) and '$' (its parameters) itself; VRRP PASS carries 8 bytes.
    "vrrp_auth_pass": Rule(text(r"[A-Za-z0-9%&()*+,./:;<=>?@\[\]^_|~-]{1,8}", "1-8 of A-Z a-z 0-9 and %&()*+,./:;<=>?@[]^_|~-"),
                           "keepalived VRRP PASS authentication"),
    # haproxy.cfg: rendered single-quoted (config.syntax.haproxy_word); any printable character.
    "haproxy_stats_password": Rule(text(PRINTABLE + "{1,256}", "1-256 printable ASCII characters"), "HAProxy stats page password"),
    # Never in a file: its hash travels (operations/galera.py native_hash).
    "mariadb_admin_password": Rule(text(r"[^\x00-\x1f\x7f]{1,256}", "1-256 characters, no control character"), "MariaDB admin account"),
    # galera.cnf: a double-quoted, escaped option value (config.syntax.option_value).
    "mariadb_sst_password": Rule(text(PRINTABLE + "{1,256}", "1-256 printable ASCII characters"), "mariabackup's state-transfer account"),
    # rabbitmqctl reads it from stdin, one line.
    "rabbitmq_password": Rule(text(r"[^\x00-\x1f\x7f]{1,256}", "1-256 characters, no control character"), "RabbitMQ account of the OpenStack services"),
    "rabbitmq_admin_password": Rule(text(r"[^\x00-\x1f\x7f]{1,256}", "1-256 characters, no control character"), "RabbitMQ management administrator"),
    # rabbitmqctl reads it from stdin; curl from a config file, double-quoted (config.syntax.curl_quoted).
    "rabbitmq_monitor_password": Rule(text(r"[^\x00-\x1f\x7f]{1,256}", "1-256 characters, no control character"), "the health report's RabbitMQ account"),
    # A file of its own (haproxy_tls_pem_path): PEM blocks, lines of printable ASCII.
    "haproxy_tls_pem": Rule(pem_bundle(), "the VIP's certificate chain and private key"),
    # Erlang's auth module accepts printable ASCII; whitespace is trimmed: none at all here.
    "rabbitmq_erlang_cookie": Rule(text(r"[!-~]{20,255}", "20-255 printable ASCII characters without spaces"), "Erlang cookie shared by the RabbitMQ nodes"),
}


def problems(key: str, kind: Kind, value):
    """(key, message, expect) for every wrong part of a value; a dict item by item."""
    if kind.items and type(value) is dict:
        keys, values = kind.items
        for k, v in value.items():
            if (reason := keys.why(k)) is not None:
                yield f"{key}.{show(k)[1:-1] if isinstance(k, str) else show(k)}", f"unknown name: {reason}", keys.expect
            else:
                yield from problems(f"{key}.{k}", values, v)
    elif (reason := kind.why(value)) is not None:
        yield key, reason, kind.expect


assert set(SITE) == set(DEFAULTS), set(SITE) ^ set(DEFAULTS)
assert set(HOST) == set(HOST_KEYS) | set(HOST_OPTIONAL_KEYS)
