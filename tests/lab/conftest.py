"""Lab tests run against real nodes on this machine (root needed; CI runs as root).

`lab_nodes` (session): a 3-node lab, brought up once (fast when it is already up) and shared by
every lab test, including the later deploy tests. At session end the lab is brought down, unless
LAB_KEEP=1 (developers keep their lab). A test that cannot get a lab fails; nothing is skipped.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lab  # noqa: E402

NODES = ["node01", "node02", "node03"]


@pytest.fixture(scope="session")
def lab_nodes():
    try:
        lab.up(3)
    except BaseException:
        # a failed `up` must not leave anything half-made behind
        if os.environ.get("LAB_KEEP") != "1":
            lab.down()
        raise
    try:
        yield list(NODES)
    finally:
        if os.environ.get("LAB_KEEP") != "1":
            lab.down()
