"""The VIP's certificate row: `tls certificate`, only with haproxy_tls.

Fact used: `haproxy_tls` (facts.haproxy.HaproxyCertificate, the installed file's notAfter).
OK while more than haproxy_tls_expiry_warn_days are left, WARN within them (the report stays
OK: renew before it fails), FAIL once expired or when the file cannot be read.
"""

from __future__ import annotations

from datetime import datetime

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
