"""The lab, its drills, the lab tests and the benches repeat no project constant: node
addresses, the VIP, ports, accounts, paths on the controllers and the secrets' environment
names come from the site model (lab/sitemodel.py, built from inventories/lab.py), whose
values come from config/defaults.py, config/catalogue.py and config/files.py.

What counts as a literal is read from the code's syntax tree (string and number constants, the
constant parts of f-strings; docstrings and comments are prose and left out), and what counts
as a project constant is read from config/ itself, so a new default or listener is guarded
without a change here. lab/names.py holds the lab's own choices (its subnet, which the
inventory turns into the site's network, VIP and addresses, and the interface name, which is
production's) and is the one file allowed to spell them.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from pathlib import Path

import pytest

from config.catalogue import merge_catalogue
from config.defaults import DEFAULTS
from config.files import DBCHECK, FILES, SST_ACCOUNT
from config.secrets import env_name
from lab.names import DEFAULT_SUBNET

REPO = Path(__file__).resolve().parents[2]
GUARDED = sorted([*REPO.glob("lab/*.py"), *REPO.glob("tests/lab/*.py"), *REPO.glob("tests/bench/*.py")])
OWN_CHOICES = {REPO / "lab" / "names.py"}

ACCOUNT_KEYS = ("mariadb_admin_user", "rabbitmq_user", "haproxy_stats_user", "rabbitmq_vhost")


def project_ports() -> set[int]:
    """Every port of the site: the defaults' *_port keys and the catalogue's listeners (the
    well-known ports below 1024 are too common as plain numbers to tell apart)."""
    ports = {v for k, v in DEFAULTS.items() if k.endswith("_port") and isinstance(v, int)}
    for s in merge_catalogue({}, legacy_enabled=True):
        ports |= {p for p in (s.port, s.backend_port) if p}
    return {p for p in ports if p >= 1024}


def project_paths() -> set[str]:
    """Paths on the controllers the deploy knows: the site's and config/files.py's."""
    paths = {v for v in DEFAULTS.values() if isinstance(v, str) and v.startswith("/")}
    paths |= {path for _, _, path, *_ in FILES if path.startswith("/")}
    return paths | {v for v in DBCHECK.values() if v.startswith("/")}


def project_words() -> set[str]:
    """Names the deploy gives: accounts, the check service, the interface name."""
    return ({DEFAULTS[k] for k in ACCOUNT_KEYS} | {DBCHECK["account"], DBCHECK["unit"], SST_ACCOUNT}
            | {DEFAULTS["vip_interface"]})


def literals(path: Path) -> list[tuple[int, object]]:
    """(line, value) of every str/int constant of a module, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and id(n) not in docstrings
            and isinstance(n.value, (str, int)) and not isinstance(n.value, bool)]


def findings(path: Path) -> list[str]:
    net = ipaddress.ip_network(DEFAULT_SUBNET)
    subnet = re.compile(re.escape(".".join(str(net.network_address).split(".")[:3])) + r"\.\d")
    ports, paths = project_ports(), project_paths()
    # a short name ("admin", "sst") only as a whole literal or next to ':' or '@' (a log line
    # may say "the sst password"); a longer one wherever it stands as a word
    words = [(w, re.compile(rf"^{re.escape(w)}$|[:@]{re.escape(w)}\b|\b{re.escape(w)}[:@]" if len(w) < 6
                            else rf"(?<![\w./-]){re.escape(w)}(?![\w-])")) for w in project_words()]
    env_prefix = env_name("x")[:-1]
    out = []
    for line, value in literals(path):
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
        if isinstance(value, int):
            if value in ports:
                out.append(f"{where}: port {value}")
            continue
        if subnet.search(value):
            out.append(f"{where}: lab address in {value!r}")
        out += [f"{where}: path {p} in {value!r}" for p in paths if p in value]
        out += [f"{where}: port {p} in {value!r}" for p in ports if re.search(rf"(?:^|:){p}(?!\d)", value)]
        out += [f"{where}: name {w!r} in {value!r}" for w, rx in words if rx.search(value)]
        if env_prefix in value:
            out.append(f"{where}: secret variable in {value!r}")
    return out


def test_the_guard_sees_what_it_guards_against(tmp_path):
    """The checker itself, on made-up lines that repeat constants and on ones that do not."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""A docstring may say 10.77.0.100 and port 3306."""\n'
                   'VIP = "10.77.0.100"\nPORT = 3306\nURL = f"@{node}:5672/"\n'
                   'SOCK = "/run/haproxy/admin.sock"\nUSER = ["-u", "admin"]\n'
                   'ENV = {"HA_SECRET_RABBITMQ_PASSWORD": "x"}\n')
    good = tmp_path / "good.py"
    good.write_text('"""No constants: 10.77.0.100."""\nTIMEOUT = 300\nUNIT = "haproxy"\nTEXT = "administrator"\n')
    assert len(findings(bad)) == 6, findings(bad)
    assert findings(good) == []


@pytest.mark.parametrize("path", [p for p in GUARDED if p not in OWN_CHOICES], ids=lambda p: str(p.relative_to(REPO)))
def test_no_project_constant_is_repeated(path):
    assert findings(path) == [], "read these from lab/sitemodel.py (or lab/names.py for the lab's own)"
