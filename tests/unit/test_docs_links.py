"""The README is a front door (at most README_MAX_LINES lines, the two set-up commands), and every
relative link of README.md and docs/**/*.md leads somewhere: a file of the repository, and a
heading of it when the link names one (`page.md#section`, GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((n, line))
    return out


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found, seen = set(), {}
    for _, line in prose(text):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            a = anchor(m.group(1))
            n = seen.get(a, 0)
            seen[a] = n + 1
            found.add(a if n == 0 else f"{a}-{n}")
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """One line per relative link of `text` (the page `page`) that leads nowhere."""
    out = []
    for n, line in prose(text):
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of ours
                continue
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} line {n}: {target}"
            if not dest.exists():
                out.append(f"{where}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest.read_text() if dest != page else text):
                out.append(f"{where}: no heading with the anchor #{frag} in {dest.relative_to(ROOT)}")
    return out


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    assert broken_links(page, page.read_text()) == []


def test_a_broken_link_is_caught():
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert "](docs/security.md)" in text
    assert broken_links(readme, text.replace("](docs/security.md)", "](docs/securty.md)", 1)) == [
        next(f"README.md line {n}: docs/securty.md: no file docs/securty.md"
             for n, line in enumerate(text.splitlines(), 1) if "](docs/security.md)" in line)]
    found = broken_links(readme, text + "\nsee [the lab](docs/lab.md#no-such-section)\n")
    assert len(found) == 1 and "no heading with the anchor #no-such-section in docs/lab.md" in found[0]
    # a link inside a code block is not a link; an image is one
    assert broken_links(readme, "```\n[x](nowhere.md)\n```\n") == []
    assert len(broken_links(readme, "![x](docs/nowhere.svg)\n")) == 1


def test_anchors_follow_github():
    assert anchor("Partial runs: `--limit`, an unreachable controller, split brain") == \
        "partial-runs---limit-an-unreachable-controller-split-brain"
    assert anchor("Adding and removing a controller") == "adding-and-removing-a-controller"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move a section to docs/"
    # exactly two set-up commands, in the set-up section's one code block
    setup = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    block = setup.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines() if line.strip()] == ["make demo", "make test"]
    assert "make test-unit" in setup
    # no path a reader of the repository cannot open
    assert "shared/" not in text and "seed/" not in text
