"""Made-up bench results for the offline tests of make bench-failover (test_timeline.py,
test_failover.py): requests around a fault, a fault's result as failover.run_fault returns it,
and the panels of a drawn timeline. No lab."""

from __future__ import annotations

import unitkit  # noqa: F401  (first: puts the repository on sys.path)
from tests.bench.timeline import Request

SVG = "{http://www.w3.org/2000/svg}"


def requests(failed_at: float | None = None) -> list[Request]:
    """API GETs every 0.5 s and writes every second from 3 s before the fault to 12 s after,
    far enough apart that each is a point of its own; `failed_at`: that GET failed (1 s)."""
    api = [Request(t / 2, "api", t / 2 != failed_at, 1.0 if t / 2 == failed_at else 0.004 + t / 1000)
           for t in range(-6, 24)]
    db = [Request(float(t), "db", True, 0.01) for t in range(-3, 12)]
    return api + db


def panels(root) -> list:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]


def result(slug: str, failed: int) -> dict:
    """A result of failover.run_fault, made up."""
    return {"slug": slug, "fault": f"fault {slug}", "holder": "node01", "new_holder": "node02", "vip_moved": 3.0,
            "http_outage": 1.0, "http_failed": failed, "http_total": 300, "api_p50": 0.004, "api_p99": 0.25,
            "db_outage": 2.0, "db_failed": 3, "db_total": 150, "acked": 147, "lost": 0, "restore_notes": [],
            "stale": {"http": (0.0, 4.2), "db": (0.0, 4.3), "direct": None}, "witness": "node03",
            "requests": requests(failed_at=1.0 if failed else None)}
