"""Fixtures and markers of the fast tier; the helpers live in unitkit.py (a distinct module
name, so it cannot clash with another test directory's conftest).

Marker `netns`: the test creates network namespaces (unitkit.netns(): `ip netns add`, root, a
veth; keepalived's config test runs in one). `pytest -q tests/unit -m "not netns"` runs the
tier without them (docs/design.md, Layout). A test that creates one unmarked fails, naming
the marker: the selection cannot silently keep one.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parents[1]):  # tests/unit (unitkit) and the repository root (config)
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import pytest  # noqa: E402

import unitkit  # noqa: E402
from unitkit import hermetic_secrets, prod_render  # noqa: E402,F401  (fixtures)

NETNS = "netns"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{NETNS}: creates network namespaces (ip netns, root); "
                                       f"-m 'not {NETNS}' runs the unit tier without them")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before any fixture of the test (a module-scoped one too): whether it may create a
    network namespace (unitkit.netns() refuses otherwise)."""
    unitkit.NETNS_MARKED = item.get_closest_marker(NETNS) is not None
