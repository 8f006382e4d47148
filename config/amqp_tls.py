"""AMQP over TLS for the OpenStack services (rabbitmq_amqp_tls): the listeners a broker opens, the
cipher list it gets, and preflight's checks of the switch's keys.

openstack-ansible's rabbitmq_use_ssl, as data, off by default: a TLS listener on
rabbitmq_amqp_tls_port (5671) of each node's address, beside the plain one on rabbitmq_port
(5672) while the services move their transport_url to TLS (openstack-ansible keeps both too);
rabbitmq_amqp_plain False closes the plain one. The deploy does not configure the OpenStack
services: closing 5672 in the same change that opens 5671 would cut every service that still
uses the plain URL at its broker's restart, so closing it is the site's second, explicit step.

The broker presents the node's certificate (tls_node_pem: it names the node's address and name,
signed by the CA of peer_tls_ca_file; RabbitMQ's copy under config/paths.py RABBITMQ_TLS_DIR, the
same files the Erlang distribution reads with rabbitmq_tls), TLS 1.2 and 1.3 only, with the VIP's
cipher policy (haproxy_tls_ciphersuites, then haproxy_tls_ciphers: ECDHE with AEAD suites). Erlang's
ssl takes the suites by name only, so an OpenSSL keyword or operator (HIGH, !aNULL) in those keys
is refused here while the switch is on: RabbitMQ would not start with it. Client certificates
are asked for only with rabbitmq_amqp_tls_verify_peer.

Nodes with and without the listener cluster together (the listener is not the Erlang
distribution), so the switch is a change of rabbitmq.conf like any other: a rolling restart.
"""

from __future__ import annotations

import re

SWITCH = "rabbitmq_amqp_tls"
PORT_KEY = "rabbitmq_amqp_tls_port"
PLAIN_KEY = "rabbitmq_amqp_plain"
VERIFY_KEY = "rabbitmq_amqp_tls_verify_peer"
KEYS = (PORT_KEY, VERIFY_KEY)  # keys that only mean something with the switch on
CIPHER_KEYS = ("haproxy_tls_ciphersuites", "haproxy_tls_ciphers")  # TLS 1.3 first, as Erlang prefers
PROTOCOLS = ("TLSv1.2", "TLSv1.3")  # what openssl s_client may report of the listener
# A suite's name as Erlang's ssl reads it (OpenSSL's ECDHE-ECDSA-AES128-GCM-SHA256, TLS 1.3's
# TLS_AES_128_GCM_SHA256): words joined by - or _, never a keyword or an operator.
SUITE = re.compile(r"[A-Z0-9]+(?:[-_][A-Z0-9]+)+")


def on(data: dict) -> bool:
    return bool(data.get(SWITCH))


def plain(data: dict) -> bool:
    """Whether the plain AMQP listener (rabbitmq_port) is open: always with the switch off."""
    return not on(data) or bool(data[PLAIN_KEY])


def listen_ports(data: dict) -> tuple[int, ...]:
    """The AMQP ports of each node's address: the plain one, the TLS one, or both."""
    return (*((data["rabbitmq_port"],) if plain(data) else ()), *((data[PORT_KEY],) if on(data) else ()))


def url_port(data: dict) -> int:
    """The port of the services' transport_url: the plain one while it is open, else the TLS one."""
    return listen_ports(data)[0]


def ciphers(data: dict) -> list[str]:
    """The listener's suites, in order: haproxy_tls_ciphersuites (TLS 1.3), then haproxy_tls_ciphers."""
    return [c for key in CIPHER_KEYS for c in data[key].split(":") if c]


def client_strings(data: dict, names: list[str], password: str) -> dict[str, str]:
    """What the OpenStack services are told (config/site.py Site.client_strings), with the switch
    on: the transport_url over TLS and the options oslo.messaging needs to check the brokers'
    certificates (the CA of peer_tls_ca_file, copied to each service's host); none off."""
    if not on(data):
        return {}
    hosts = ",".join(f"{data['rabbitmq_user']}:{password}@{n}:{data[PORT_KEY]}" for n in names)
    certs = ", ssl_cert_file = <its certificate>, ssl_key_file = <its key>" if data[VERIFY_KEY] else ""
    return {"transport_url_tls": f"rabbit://{hosts}/{data['rabbitmq_vhost']}",
            "oslo_messaging_rabbit": f"ssl = True, ssl_ca_file = <the CA certificate of peer_tls_ca_file>{certs}"}


def check(G: str, data: dict, site_keys, bad: set, err, warn) -> None:
    """Preflight's checks of the switch's keys (the certificate material is config/peer_tls.py's:
    the switch is one of its SWITCHES), G the group's name. Errors stop the run before any host
    is touched."""
    if {SWITCH, PLAIN_KEY} & bad:
        return
    if not on(data):
        if not data[PLAIN_KEY]:
            err(G, PLAIN_KEY, f"False while {SWITCH} is False: the brokers would have no AMQP listener, every OpenStack "
                "service would lose its broker", f"set {SWITCH} True (with its certificates), or {PLAIN_KEY} True")
        for key in KEYS:
            if key in site_keys and key not in bad:
                warn(G, key, f"has no effect while {SWITCH} is False", f"set {SWITCH} True, or remove {key}")
        return
    for key in CIPHER_KEYS:
        if key in bad:
            continue
        wrong = [c for c in data[key].split(":") if not SUITE.fullmatch(c)]
        if wrong:
            err(G, key, f"{', '.join(repr(c) for c in wrong[:3])} is not a cipher suite's name: with {SWITCH} RabbitMQ "
                "takes this list too, and Erlang's ssl reads names only (no OpenSSL keyword, operator or empty entry)",
                f"list the suites by name, separated by ':' (as the default does), or set {SWITCH} False")
