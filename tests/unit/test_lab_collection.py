"""The lab tests and benches can be collected with no lab on the machine: nothing reads the lab's
site model (its inventory lists the nodes that exist) when a module is imported, only when a
test runs. A CI machine has no lab until the session fixture brings it up; a module-level read
broke the whole `make test` at collection (test_26's distribution port)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted([*ROOT.glob("tests/lab/test_*.py"), *ROOT.glob("tests/bench/*.py")])


def no_lab(*_args, **_kwargs):
    raise AssertionError("the lab's site model read at import: read it when the test runs")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_importing_reads_no_lab(path):
    from lab import sitemodel

    name = f"_collect_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    with mock.patch.object(sitemodel, "site", no_lab), mock.patch("lab.images.node_names", no_lab):
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(name, None)
