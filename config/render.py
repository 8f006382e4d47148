"""Offline render: every file the deploy would write, per host, without SSH.

    python -m config.render INVENTORY OUT      (make render INVENTORY=... OUT=...)

Writes OUT/<host>/<target path> for each controller, secrets shown as placeholders, after
preflight. The only way this project reads inventories/prod.py: nothing connects to it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from config.files import managed_files
from config.preflight import check, print_report
from config.secrets import PLACEHOLDERS
from config.site import InventoryError, build_site, load_groups


def render(inventory: str | Path, out: str | Path) -> dict[str, list[Path]]:
    """Render every host's files under out/; returns the written paths per host.

    Raises SystemExit(1) after printing preflight errors.
    """
    hosts, group_data, others = load_groups(inventory)
    report = check(hosts, group_data, secrets_required=False, others=others)
    print_report(report)
    if report.errors:
        print(f"render: {len(report.errors)} preflight error(s); nothing rendered", file=sys.stderr)
        raise SystemExit(1)
    site = build_site(hosts, group_data)
    written: dict[str, list[Path]] = {}
    for name, _ in hosts:
        for f in managed_files(site, name, PLACEHOLDERS):
            target = Path(out) / name / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content)
            os.chmod(target, int(f.mode, 8) | 0o600)  # keep it readable by whoever rendered it
            written.setdefault(name, []).append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m config.render INVENTORY OUT", file=sys.stderr)
        return 2
    try:
        written = render(argv[0], argv[1])
    except InventoryError as exc:
        print(f"error: {exc}; nothing rendered", file=sys.stderr)
        return 1
    for name, paths in written.items():
        print(f"{name}: {len(paths)} files under {Path(argv[1]) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
