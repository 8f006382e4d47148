"""python -m tests.soak check HISTORY.jsonl: check a saved soak history again; prints the
table per fault kind, the anomalies found and the `soak:` line; exits 1 when anything was
lost or any anomaly was found, 2 when the history cannot be read.
python -m tests.soak run [--minutes M] [--seed N] [--out DIR] [--only KIND,...]: a soak on the
lab (tests/soak/run.py).
python -m tests.soak timeline HISTORY.jsonl [--out FILE.svg]: the run's timeline picture
(tests/soak/timeline.py; default: timeline.svg beside the history)."""

from __future__ import annotations

import argparse
import sys

from tests.soak import history
from tests.soak.checker import check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check a saved history").add_argument("history")
    pic = sub.add_parser("timeline", help="draw a saved history's timeline (SVG)")
    pic.add_argument("history")
    pic.add_argument("--out", default=None)
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from tests.soak import run
        return run.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "timeline":
        from pathlib import Path

        from tests.soak import timeline
        try:
            records = history.load(args.history)
            out = timeline.write(records, args.out or Path(args.history).with_name("timeline.svg"),
                                 title=f"soak {Path(args.history).parent.name}")
        except (OSError, ValueError) as exc:
            print(f"soak timeline: {exc}", file=sys.stderr)
            return 2
        print(out)
        return 0
    try:
        report = check(history.load(args.history))
    except (OSError, ValueError) as exc:
        print(f"soak check: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return 1 if report.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
