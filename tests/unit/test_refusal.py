"""A refusal seen as an operator sees it: the real pyinfra command line on three hosts of
pyinfra's @fake connector (nothing is run anywhere, no network), which loads deploy.py once
per host in parallel greenlets. The refusal is printed once, the run exits 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).parent / "pyinfra"

INVENTORY = """
controllers = (
    [(f"@fake/node0{i}", {"address": f"10.99.0.1{i}", "vrrp_priority": 150 - i}) for i in (1, 2, 3)],
    {"internal_network": "10.99.0.0/24", "vip": "10.99.0.100", "keepalived_virtual_router_id": 77,
     "haproxy_tls": False},
)
"""


def run_pyinfra(tmp_path: Path, deploy: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "inventory.py").write_text(INVENTORY)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HA_SECRET", "HA_LAB"))}
    return subprocess.run(
        [str(PYINFRA), "-y", str(tmp_path / "inventory.py"), deploy],
        cwd=ROOT, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120,
    )


def test_a_preflight_refusal_inside_deploy_py_is_printed_once_without_a_traceback(tmp_path):
    # A VRRP password keepalived cannot keep (9 characters): refused by preflight, which
    # deploy.py runs in every host's greenlet.
    secrets = {f"HA_SECRET_{n.upper()}": "s3cret-value" for n in (
        "haproxy_stats_password", "mariadb_admin_password", "mariadb_sst_password", "rabbitmq_password",
        "rabbitmq_admin_password", "rabbitmq_erlang_cookie")}
    proc = run_pyinfra(tmp_path, "deploy.py", {**secrets, "HA_SECRET_VRRP_AUTH_PASS": "ninechars"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "SystemExit" not in out, out
    line = "error: controllers: vrrp_auth_pass: 9 characters: keepalived silently uses only the first 8"
    assert out.count(line) == 1, out
    assert out.count("error(s); no host was changed") == 1, out
    assert "ninechars" not in out


def test_a_decision_refused_once_for_every_host_is_printed_once_without_a_traceback(tmp_path):
    # A decided_once refusal (the Galera plan's, the firewall's, maintenance's shape).
    (tmp_path / "refuse.py").write_text(
        "from operations.common import decided_once\n\n"
        "@decided_once('galera: ', ValueError)\n"
        "def plan():\n"
        "    raise ValueError('node04 is a member the inventory does not list')\n\n"
        "plan()\n"
    )
    proc = run_pyinfra(tmp_path, str(tmp_path / "refuse.py"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert out.count("galera: node04 is a member the inventory does not list") == 1, out


def test_an_error_that_is_not_a_refusal_still_shows_its_traceback(tmp_path):
    # The clean stop is for refusals only: a bug keeps pyinfra's report.
    (tmp_path / "crash.py").write_text("{}['missing']\n")
    proc = run_pyinfra(tmp_path, str(tmp_path / "crash.py"))
    assert proc.returncode != 0 and "Traceback" in proc.stdout + proc.stderr
