"""The installed certificate in the health report: HaproxyCertificate's process() on outputs
captured from openssl (captures/haproxy_tls/), and the `tls certificate` row (health/tls.py): OK, WARN within
haproxy_tls_expiry_warn_days of the expiry (the report stays OK), FAIL expired or unreadable
naming the host and the path, nothing without haproxy_tls."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from healthkit import F, capture, certificate, healthy, lab_site, row, statuses

from config.site import build_site
from health.checks import evaluate
from health.report import FAIL, OK, WARN
from operations.before import health_parts

CAPTURED_AT = datetime(2026, 11, 27, 8, 38, 51, tzinfo=timezone.utc)
PATH = "/etc/haproxy/openstack-ha.pem"


def test_the_fact_reads_the_expiry_date():
    assert capture("haproxy_tls", "valid") == {"not_after": "2029-03-01T08:38:51Z", "error": None}
    assert capture("haproxy_tls", "expired") == {"not_after": "2026-11-02T09:00:00Z", "error": None}


@pytest.mark.parametrize("case, error", [
    ("missing", "openssl x509 -enddate: Could not open file or uri for loading certificate from " + PATH),
    ("not_pem", "openssl x509 -enddate: Could not read certificate from " + PATH),
])
def test_the_fact_says_why_it_cannot_read_the_file(case, error):
    assert capture("haproxy_tls", case) == {"not_after": None, "error": error}


@pytest.mark.parametrize("output, error", [
    ("__missing=openssl\n", "openssl not installed"),
    ("notAfter=Mar  1 08:38:51 2029 GMT\n", "no exit status"),  # cut short
    ("__rc=0\n", "no notAfter date"),
    ("notAfter=someday\n__rc=0\n", "no notAfter date"),
])
def test_the_fact_never_guesses(output, error):
    result = F.HaproxyCertificate().process(output.splitlines())
    assert result["not_after"] is None and error in result["error"]


def cert_row(fact: dict, now: datetime = CAPTURED_AT, **data):
    site = lab_site()
    site.data.update(data)
    results = healthy(site)
    for n in results:  # the others far from their end at `now`
        results[n]["haproxy_tls"] = certificate(days=400, now=now)
    results["node02"]["haproxy_tls"] = fact
    report = evaluate(site, results, now=now)
    return report, row(report, "node02", "tls certificate")


def test_a_certificate_far_from_its_end_is_ok():
    report, r = cert_row(capture("haproxy_tls", "valid"))
    assert (r.status, r.detail) == (OK, "expires 2029-03-01 08:38 UTC (825 days)")
    assert report.ok and report.warnings() == []


@pytest.mark.parametrize("days_left", [29, 1])
def test_within_the_warning_days_it_warns_and_the_report_stays_ok(days_left):
    valid = capture("haproxy_tls", "valid")
    now = datetime(2029, 3, 1, 8, 38, 51, tzinfo=timezone.utc) - timedelta(days=days_left)
    report, r = cert_row(valid, now)
    assert r.status == WARN
    assert r.detail == (f"{PATH} expires in {days_left} days (2029-03-01 08:38 UTC); "
                        "renew it: a new haproxy_tls_pem, then deploy (a reload)")
    assert report.ok and report.warnings() == [f"node02: tls certificate: {r.detail}"]
    assert report.to_dict()["warnings"] == report.warnings()
    assert report.render().endswith("health: OK (1 warning)")
    # the site's own number of days
    assert cert_row(valid, now, haproxy_tls_expiry_warn_days=0)[1].status == OK
    assert cert_row(valid, now - timedelta(days=40), haproxy_tls_expiry_warn_days=90)[1].status == WARN


def test_an_expired_certificate_fails_naming_the_host_and_the_path():
    report, r = cert_row(capture("haproxy_tls", "expired"))
    assert r.status == FAIL and r.detail.startswith(f"{PATH} expired on 2026-11-02 09:00 UTC")
    assert not report.ok
    assert report.failures() == [f"node02: tls certificate: {r.detail}"]
    assert report.host_failures("node01") == []


@pytest.mark.parametrize("case", ["missing", "not_pem"])
def test_an_unreadable_certificate_fails_naming_the_path(case):
    fact = capture("haproxy_tls", case)
    report, r = cert_row(fact)
    assert (r.status, r.detail) == (FAIL, f"cannot read {PATH}: {fact['error']}")
    assert not report.ok


def test_a_site_without_tls_has_no_certificate_row_and_reads_no_certificate():
    site = lab_site()
    results = healthy(site)
    site.data["haproxy_tls"] = False
    for n in results:
        del results[n]["haproxy_tls"]
    report = evaluate(site, results)
    assert report.ok and "tls certificate" not in statuses(report, "node01")
    assert "haproxy_tls" not in health_parts(site, "node01")
    assert "haproxy_tls" in health_parts(lab_site(), "node01")


def test_the_fact_reads_the_site_path():
    lab = lab_site()
    site = build_site([(c.name, {"address": c.address, "vrrp_priority": c.vrrp_priority}) for c in lab.controllers],
                      {**{k: lab.data[k] for k in ("internal_network", "vip", "vip_interface")},
                       "haproxy_tls_pem_path": "/etc/ssl/private/vip.pem"})
    name, args = health_parts(site, "node01")["haproxy_tls"]
    assert name == "facts.haproxy:HaproxyCertificate" and dict(args) == {"path": "/etc/ssl/private/vip.pem"}
    results = healthy(site)
    results["node01"]["haproxy_tls"] = certificate(days=-1)
    assert row(evaluate(site, results), "node01", "tls certificate").detail.startswith("/etc/ssl/private/vip.pem expired")


@pytest.mark.parametrize("not_after", ["2029-03-01T08:38:51Z", "someday", "", None, 20290301])
def test_the_row_and_the_metric_read_the_fact_s_date_alike(not_after):
    """One reading of the fact's date (config.tls.fact_date, the format the fact writes): the
    row fails with no expiry date exactly where the metric has no series."""
    from config.tls import FACT_DATE, fact_date
    from health.metrics import samples
    from health.report import Report

    until = fact_date(not_after)
    assert (until is None) == (not_after != "2029-03-01T08:38:51Z")
    if until:
        assert until.strftime(FACT_DATE) == not_after and until.tzinfo == timezone.utc
    fact = {"not_after": not_after, "error": None}
    _, r = cert_row(fact)
    site = lab_site()
    series = [v for m, _, v in samples(site, "node02", {"haproxy_tls": fact}, Report(controllers=[], hosts={}), CAPTURED_AT)
              if m.endswith("tls_certificate_expiry_timestamp_seconds")]
    if until is None:
        assert (r.status, r.detail, series) == (FAIL, f"cannot read {PATH}: no expiry date", [])
    else:
        assert r.status == OK and series == [until.timestamp()]
