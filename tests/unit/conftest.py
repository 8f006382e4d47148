"""Fixtures of the fast tier; the helpers live in unitkit.py (a distinct module name, so
it cannot clash with another test directory's conftest)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parents[1]):  # tests/unit (unitkit) and the repository root (config)
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from unitkit import hermetic_secrets, prod_render  # noqa: E402,F401  (fixtures)
