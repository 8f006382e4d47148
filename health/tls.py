"""The TLS rows: the VIP's certificate (`tls certificate`, only with haproxy_tls) and the AMQP
over TLS listener (`amqp tls`).

Fact used: `haproxy_tls` (facts.haproxy.HaproxyCertificate, the installed file's notAfter).
OK while more than haproxy_tls_expiry_warn_days are left, WARN within them (the report stays
OK: renew before it fails), FAIL once expired or when the file cannot be read.

Fact used: `amqp_tls` (facts.rabbitmq.AmqpTls, openssl s_client to the node's
rabbitmq_amqp_tls_port). With rabbitmq_amqp_tls: OK when the listener completes a TLS 1.2 or
1.3 handshake with a certificate that verifies against the CA for the node's address, FAIL
otherwise. Without: no row while nothing answers there (a fact missing or in error FAILs, on or off) (the listener is absent, as it should
be); a WARN row when something still does (a broker not restarted since the switch went off).
"""

from __future__ import annotations

from datetime import datetime

from config import amqp_tls
from config.site import Site
from config.tls import days_left, fact_date
from health.report import FAIL, OK, WARN, Check, problem

RENEW = "renew it: a new haproxy_tls_pem, then deploy (a reload)"


def certificate_rows(site: Site, facts: dict, now: datetime) -> list[Check]:
    """`tls certificate`: the installed certificate is readable and not about to expire."""
    d = site.data
    if not d["haproxy_tls"]:
        return []
    path = d["haproxy_tls_pem_path"]
    if not isinstance(facts.get("haproxy_tls"), dict):
        return [Check("tls certificate", FAIL, problem(facts, "haproxy_tls"))]
    if problem(facts, "haproxy_tls"):
        return [Check("tls certificate", FAIL, f"cannot read {path}: {problem(facts, 'haproxy_tls')}")]
    until = fact_date(facts["haproxy_tls"].get("not_after"))
    if until is None:
        return [Check("tls certificate", FAIL, f"cannot read {path}: no expiry date")]
    days = days_left(until, now)
    when = f"{until:%Y-%m-%d %H:%M} UTC"
    if days <= 0:
        return [Check("tls certificate", FAIL, f"{path} expired on {when}: HTTPS clients refuse the VIP; {RENEW}")]
    if days < d["haproxy_tls_expiry_warn_days"]:
        return [Check("tls certificate", WARN, f"{path} expires in {days:.0f} days ({when}); {RENEW}")]
    return [Check("tls certificate", OK, f"expires {when} ({days:.0f} days)")]


def amqp_tls_rows(site: Site, name: str, facts: dict) -> list[Check]:
    """`amqp tls`: the AMQP over TLS listener answers TLS 1.2+ with the node's certificate when
    rabbitmq_amqp_tls is on; nothing answers on its port when off (no row then)."""
    d = site.data
    where = f"{site.controller(name).address}:{d[amqp_tls.PORT_KEY]}"
    if problem(facts, "amqp_tls"):
        return [Check("amqp tls", FAIL, problem(facts, "amqp_tls"))]  # on or off: never skipped
    a = facts["amqp_tls"]
    state, protocol = a.get("amqp_tls"), a.get("protocol")
    if not amqp_tls.on(d):
        if state == "stopped":
            return []
        return [Check("amqp tls", WARN, f"{where} answers ({state}) while {amqp_tls.SWITCH} is off: a broker not restarted "
                                        "since the switch? deploy again (it restarts the brokers one at a time)")]
    if state == "tls" and protocol in amqp_tls.PROTOCOLS and a.get("verified"):
        return [Check("amqp tls", OK, f"{where} answers {protocol}, certificate verified against the CA for {where.split(':')[0]}")]
    if state == "tls":
        why = (f"negotiates {protocol or 'an unknown protocol'} (TLS 1.2 or 1.3 expected)" if protocol not in amqp_tls.PROTOCOLS
               else "its certificate does not verify against the CA")
    elif state == "stopped":
        why = "nothing listens (the broker is down, or was not restarted since the switch)"
    elif state == "plain":
        why = "answers without TLS"
    else:
        why = f"the TLS handshake failed: {a.get('detail') or 'no reason given'}"
    return [Check("amqp tls", FAIL, f"{where}: {why}; the OpenStack services' AMQP over TLS fails here")]
