"""config/debversion.py: Debian versions checked and ordered as dpkg orders them.

Each pair is also asked of this machine's dpkg when it has one (`dpkg --compare-versions`):
the comparator must agree with the reference, not with itself."""

import shutil
import subprocess

import pytest

import unitkit  # noqa: F401
from config.debversion import Version, compare, why_not

# (a, b, expected sign of a - b): policy's rules, one boundary each.
PAIRS = [
    ("1.0", "1.0", 0),
    ("1.0", "1.0-0", 0),  # an absent revision is "0"
    ("0:1.0", "1.0", 0),  # an absent epoch is 0
    ("1.00", "1.0", 0),  # digits compare as numbers
    ("1.0~rc1", "1.0", -1),  # '~' sorts before the end
    ("1.0~~", "1.0~", -1),
    ("1.0~~a", "1.0~", -1),
    ("1.0", "1.0a", -1),  # the end before a letter
    ("1.0a", "1.0+", -1),  # letters before non-letters
    ("1.0+b1", "1.0", 1),
    ("1.0.1", "1.0", 1),
    ("1.9", "1.10", -1),  # numbers, not characters
    ("1:0.1", "9.9", 1),  # the epoch first
    ("2:1", "10:0", -1),
    ("1.0-1", "1.0-1+deb12u1", -1),
    ("1:10.11.18-0+deb12u1", "1:10.11.19-0+deb12u1", -1),
    ("1:10.11.19-0+deb12u1", "1:10.11.6-0+deb12u1", 1),
    ("2.6.12-1+deb12u3", "2.6.12-1+deb12u4", -1),
    ("1.6.18-1", "1.6.18-1+deb12u1", -1),
    ("3.12.1-1", "3.9.29-1", 1),
    ("1.2-3-4", "1.2-3", 1),  # a hyphen in upstream: the revision is after the last one
    ("1.2-10-1", "1.2-9-2", 1),
    ("1.0-a", "1.0-1", 1),  # revisions compare like upstreams (a letter after a number)
]

BAD = ["", "a1.0", "1.0-", "x:1.0", "1.0 ", "1.0\n", "1_0", ":1.0", "1.0-a_b", "1" * 129, 10]


@pytest.mark.parametrize("a,b,sign", PAIRS, ids=[f"{a} vs {b}" for a, b, _ in PAIRS])
def test_order(a, b, sign):
    assert compare(a, b) == sign
    assert compare(b, a) == -sign
    assert (Version(a) == Version(b)) == (sign == 0)
    if sign == 0:
        assert hash(Version(a)) == hash(Version(b))


@pytest.mark.parametrize("a,b,sign", PAIRS, ids=[f"{a} vs {b}" for a, b, _ in PAIRS])
def test_dpkg_agrees(a, b, sign):
    assert shutil.which("dpkg"), "dpkg is needed to check the comparator against it (a Debian host: apt-get install dpkg)"
    op = {-1: "lt", 0: "eq", 1: "gt"}[sign]
    assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


@pytest.mark.parametrize("text", BAD, ids=[repr(t)[:20] for t in BAD])
def test_not_a_version(text):
    assert why_not(text)
    with pytest.raises(ValueError):
        Version(text)


def test_parts():
    v = Version("1:10.11.19-0+deb12u1")
    assert (v.epoch, v.upstream, v.revision) == (1, "10.11.19", "0+deb12u1")
    assert why_not("1:10.11.19-0+deb12u1") is None and why_not("2.6.12-1+deb12u4") is None
    assert why_not("1.0~rc1") is None
