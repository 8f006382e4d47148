"""Debian package versions, per Debian policy 5.6.12: parsed, checked and compared as dpkg
does (`dpkg --compare-versions`). A leaf: preflight and the upgrade plan use it.

    [epoch:]upstream_version[-debian_revision]

- epoch: digits (absent: 0); compared as a number, first.
- upstream_version: starts with a digit; A-Z a-z 0-9 . + ~, and '-' only when a revision
  follows (the revision is after the last '-').
- debian_revision: A-Z a-z 0-9 + . ~ (absent: "0", as dpkg compares it).

Both strings are compared part by part: a run of non-digits by character (letters before
non-letters, '~' before everything, even the end of the string), then a run of digits as a
number. So 1.0~rc1 < 1.0 < 1.0a < 1.0+b1, and 1:0.1 > 9.9 (the epoch first).
python-apt is not in the virtualenv; tests/unit/test_debversion.py checks this against dpkg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_EPOCH = re.compile(r"[0-9]+")
_UPSTREAM = re.compile(r"[0-9][A-Za-z0-9.+~-]*")
_REVISION = re.compile(r"[A-Za-z0-9+.~]+")
MAX_LENGTH = 128  # longer is no Debian archive's version: a pasted line, not a version
EXPECT = 'a Debian version [epoch:]upstream[-revision], e.g. "1:10.11.19-0+deb12u1"'


def why_not(text) -> str | None:
    """Why `text` is not a Debian version (one line, the value shown), or None."""
    if type(text) is not str:
        return f"{ascii(text)} is not a string"
    if not text or len(text) > MAX_LENGTH:
        return f"{ascii(text[:60])} is not {EXPECT} (1-{MAX_LENGTH} characters)"
    epoch, colon, rest = text.partition(":")
    if not colon:
        epoch, rest = "", text
    elif not _EPOCH.fullmatch(epoch):
        return f"{ascii(text)} has an epoch that is not a number ({ascii(epoch)} before ':')"
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, None
    if not _UPSTREAM.fullmatch(upstream):
        return f"{ascii(text)} is not {EXPECT} (the upstream part {ascii(upstream)} must start with a digit, then A-Z a-z 0-9 . + ~ -)"
    if revision is not None and not _REVISION.fullmatch(revision):
        return f"{ascii(text)} is not {EXPECT} (the revision {ascii(revision)} after the last '-' must be A-Z a-z 0-9 + . ~)"
    return None


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A parsed Debian version; ordered as dpkg orders it. Version("1:2.0-1") > Version("2.1")."""

    text: str

    def __post_init__(self):
        if (reason := why_not(self.text)) is not None:
            raise ValueError(reason)

    @property
    def epoch(self) -> int:
        head, colon, _ = self.text.partition(":")
        return int(head) if colon else 0

    @property
    def upstream(self) -> str:
        rest = self.text.partition(":")[2] if ":" in self.text else self.text
        return rest.rpartition("-")[0] if "-" in rest else rest

    @property
    def revision(self) -> str:
        rest = self.text.partition(":")[2] if ":" in self.text else self.text
        return rest.rpartition("-")[2] if "-" in rest else ""

    def _cmp(self, other: Version) -> int:
        if self.epoch != other.epoch:
            return -1 if self.epoch < other.epoch else 1
        return verrevcmp(self.upstream, other.upstream) or verrevcmp(self.revision, other.revision)

    def __eq__(self, other):
        return isinstance(other, Version) and self._cmp(other) == 0

    def __lt__(self, other):
        return self._cmp(other) < 0

    def __hash__(self):  # equal versions (1.0 and 1.0-0, 0:1.0) hash alike
        return hash((self.epoch, _canonical(self.upstream), _canonical(self.revision or "0")))

    def __str__(self) -> str:
        return self.text


def _canonical(part: str) -> str:
    """Leading zeros of every number dropped: equal parts look alike (for hashing only)."""
    return re.sub(r"(?<![0-9])0+(?=[0-9])", "", part)


def _order(c: str) -> int:
    """dpkg's order of a non-digit character: '~' first, then the end of the string (0),
    then letters, then every other character."""
    if c == "~":
        return -1
    if c.isascii() and c.isalpha():
        return ord(c)
    return ord(c) + 256


def verrevcmp(a: str, b: str) -> int:
    """dpkg's verrevcmp (lib/dpkg/version.c): <0, 0 or >0 as `a` sorts before, with or after `b`."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` sorts before, equal to or after `b` (both valid)."""
    x, y = Version(a), Version(b)
    return (x > y) - (x < y)
