"""python -m tests.soak check HISTORY.jsonl: check a saved soak history again; prints the
table per fault kind, the anomalies found and the `soak:` line; exits 1 when anything was
lost or any anomaly was found, 2 when the history cannot be read.
python -m tests.soak run [--minutes M] [--seed N] [--out DIR] [--only KIND,...]: a soak on the
lab (tests/soak/run.py)."""

from __future__ import annotations

import argparse
import sys

from tests.soak import history
from tests.soak.checker import check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check a saved history").add_argument("history")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from tests.soak import run
        return run.main(argv[1:])
    args = parser.parse_args(argv)
    try:
        report = check(history.load(args.history))
    except (OSError, ValueError) as exc:
        print(f"soak check: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return 1 if report.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
