"""Several facts in one round trip: their commands run side by side on the host, each
answer is handed to its own fact's process(). A run reads each controller once before it
plans (and once after its changes, for the report) instead of once per fact; the slowest
command (rabbitmqctl starts an Erlang VM) sets the time, not the sum.

A part is `(fact class, {argument: value})`: ours (facts/) or pyinfra's own (Hostname,
FileContents, Sha1File, DebPackages). The bundle answers `{"parts": [result, ...], "error":
None}` in the parts' order; a part whose command exited non-zero, or whose answer was cut,
is None (unknown; its exit status is in "status"), and the caller reads that fact on its
own (pyinfra's usual handling) or reports it.
"""

from __future__ import annotations

import importlib
import secrets
import shlex

from pyinfra.api import FactBase, StringCommand

from facts.probe import INPUT_ENV, NO_OUTPUT

KILL_AFTER = 10  # seconds between `timeout`'s TERM and its KILL of a part that outlived its limit


def part(cls, **kwargs) -> tuple:
    """A part as a hashable, printable fact argument (pyinfra prints fact arguments with -v:
    no part ever takes a secret)."""
    return (f"{cls.__module__}:{cls.__qualname__}", tuple(sorted(kwargs.items())))


def fact_class(name: str):
    module, _, qualname = name.partition(":")
    return getattr(importlib.import_module(module), qualname)


def _text(command) -> str:
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


class Bundle(FactBase):
    """
    .. code:: python

        {"parts": [{"files": {...}, "error": None}, None, ["node01"]], "error": None}
    """

    @staticmethod
    def default():
        return {"parts": [], "error": NO_OUTPUT}

    def command(self, parts, limit: int = 0, with_input: bool = False):
        """+ parts: part() tuples; + limit: seconds each part may take (0: unbounded; a part
        cut by it is unknown, the others are still read); + with_input: the bundle's stdin
        (get_fact's _stdin, never printed) is saved in a 0600 file of its private directory,
        $HA_INPUT for the parts (facts.probe INPUT_ENV), removed with it also when the bundle
        is cut"""
        self.marker = f"__part_{secrets.token_hex(6)}"
        self.facts = []
        runs = []
        for i, (name, kwargs) in enumerate(parts):
            fact = fact_class(name)()
            command = _text(fact.command(**dict(kwargs)))
            requires = fact.requires_command(**dict(kwargs)) if callable(fact.requires_command) else None
            if requires:
                command = f"command -v {shlex.quote(requires)} >/dev/null 2>&1 || exit 97; {command}"
            self.facts.append(fact)
            # in the background; its header (printf: the shell's own, no process) once it ended
            runs.append(f"( ( set --; {command} ) >\"$1/{i}\" 2>/dev/null; "
                        f"printf '\\n%s %s\\n' '{self.marker} {i}' $? >\"$1/{i}.h\" ) &")
        # Every part starts at once in one shell, $1 the private directory: one deadline bounds
        # each. With a limit, one `timeout` for them all (it was one per part: two processes
        # each); when it fires, TERM reaches every process of their group, KILL what is left of
        # it (a part that ignores TERM) right after, and each part that had not ended is said
        # timed out (124); without one, or unbounded, a missing header says "cut".
        group = f"sh -c {shlex.quote(' '.join(runs) + ' wait')} sh \"$d\""
        if limit:
            run = (f"timeout -k {KILL_AFTER} {int(limit)} {group} & t=$!; wait $t; rc=$?; "
                   "if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then kill -s KILL -- -$t 2>/dev/null; st=124; else st=cut; fi; ")
        else:
            run = f"{group}; st=cut; "
        missing = " ".join(f"[ -e $d/{i}.h ] || printf '\\n%s %s\\n' '{self.marker} {i}' $st >$d/{i}.h;"
                           for i in range(len(parts)))
        # One `cat` shows every part, each after its header: a blank line, then the marker line
        # (the blank line ends a last line without a newline; process() drops it otherwise).
        show = " ".join(f"$d/{i}.h $d/{i}" for i in range(len(parts)))
        keep = (f"trap 'rm -rf \"$d\"' EXIT; trap 'exit 1' HUP INT TERM; (umask 077 && cat > $d/in); "
                f"export {INPUT_ENV}=$d/in; ") if with_input else ""
        if not parts:
            return f"d=$(mktemp -d) || exit 1; {keep}printf '\\n%s\\n' '{self.marker} end'; rm -rf $d"
        return (f"d=$(mktemp -d) || exit 1; {keep}{run}{missing} cat {show} 2>/dev/null; "
                f"printf '\\n%s\\n' '{self.marker} end'; rm -rf $d")

    def process(self, output):
        sections: dict[int, list[str]] = {}
        status: dict[int, str] = {}
        current = None
        ended = False
        for line in output:
            if line.startswith(self.marker + " "):
                if current is not None and sections[current] and sections[current][-1] == "":
                    sections[current].pop()  # the blank line before this marker (command())
                _, index, rc = (line.split(" ") + ["", ""])[:3]
                if index == "end":
                    ended = True
                    break
                current = int(index)
                sections[current], status[current] = [], rc
            elif current is not None:
                sections[current].append(line)
        results = []
        for i, fact in enumerate(self.facts):
            lines = sections.get(i)
            if lines is None or status.get(i) != "0":
                results.append(None)
            elif not lines:
                results.append(fact.default() if callable(getattr(fact, "default", None)) else None)
            else:
                results.append(fact.process(lines))
        return {
            "parts": results,
            # each part's exit status ("cut" when its answer is missing): 124 is `timeout`
            "status": [status.get(i, "cut") for i in range(len(self.facts))],
            "error": None if ended else "bundle: output cut short",
        }
