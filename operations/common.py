"""What every component shares: the site and its secrets, rolling turns, announcements, bounded
waits. The state before the run is in operations/before.py, the shared operations (files,
packages, services) in operations/steps.py; what a run keeps, per run, operations/runstate.py.

Secrets never travel as operation or fact arguments (pyinfra prints those): operations look
them up here by name, commands carry them as HiddenValue, and diffs are masked.
"""

from __future__ import annotations

import shlex
import sys

from pyinfra import host, inventory, logger, state
from pyinfra.api import StringCommand, operation
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import server
from pyinfra_cli.exceptions import CliError

from config.files import ManagedFile, managed_files
from config.preflight import check, print_report
from config.secrets import SecretsError, load_secrets, mask
from config.site import Site, build_site, inventory_others, inventory_shape, read_inventory_file
from operations import pyinfra_args  # noqa: F401  (pyinfra's per-operation argument list, computed once)
from operations import pyinfra_order  # noqa: F401  (pyinfra's operation order, from the frames)
from operations import quick_exit  # noqa: F401  (no collection over the run's objects at exit)
from operations.runstate import once, run_dict

APT_TIMEOUT = 600  # seconds for one apt-get install; apt has hung forever on lab nodes
WAIT_SECONDS = 300  # cluster joins, Synced, services answering


class Refused(CliError, PyinfraError):
    """A refusal before any change: its message (if any) printed once, exit status 1, no
    traceback. Raise it, never SystemExit, from code pyinfra runs while it loads deploy.py.

    pyinfra evaluates deploy.py once per host, each in a greenlet. A SystemExit there is not
    caught by pyinfra (it catches Exception): gevent reports it from every greenlet it ends,
    with a traceback, and the deploy's print ran once per host. pyinfra passes a PyinfraError
    from a deploy file up unchanged (pyinfra_cli.util.exec_file), returns the first host's to
    the main greenlet (_parallel_load_hosts) and disconnects; as a CliError the command line
    raises it as it is (pyinfra_cli.cli.cli) and click calls show() once, then exits with
    exit_code. The message is printed there, once, whichever host raised it first; a refusal
    that has printed its own lines (one per host) carries no message."""

    def __init__(self, message: str = ""):
        super().__init__(message)

    def show(self, file=None) -> None:
        if self.message:
            print(self.message, file=sys.stderr, flush=True)


def decided_once(prefix: str, *refusals: type[Exception]):
    """A decision that could split or stall a cluster, taken once per run from the whole
    picture and shared by every host: the decorated function returns it, or raises one of
    `refusals`. A refusal ends every host's deploy with Refused (its message after `prefix`,
    printed once) before any change; the decision itself is re-checked on the host when its
    command runs (the operations' own guards)."""

    def wrap(fn):
        @once
        def decide():
            try:
                return fn(), None
            except refusals as exc:
                return None, Refused(f"{prefix}{exc}")

        def wrapper():
            value, refused = decide()
            if refused is not None:
                raise refused
            return value

        wrapper.__doc__ = fn.__doc__
        wrapper.__name__ = fn.__name__
        return wrapper

    return wrap


def controllers_in_run() -> set[str]:
    """Controllers this run changes: in the --limit (if any) and connected."""
    names = {c.name for c in site().controllers}
    return {h.name for h in inventory.get_active_hosts() if h.name in names}


def allow_group(name: str) -> None:
    """An entry that acts on a group besides the controllers (the restore rehearsal's
    `rehearsal`, made by inventories/rehearsal.py) says so before site(): preflight then leaves
    that group to the entry's own checks. Every other entry still refuses it (deploy.py would
    run on its hosts)."""
    run_dict("allowed groups")[name] = True


@once
def inventory_file() -> tuple:
    """The inventory file on pyinfra's command line, read once a run (config.site
    read_inventory_file: the file is code, and the lab's runs openssl)."""
    return read_inventory_file(sys.argv)


@once
def _preflight() -> tuple[Site, dict] | Refused:
    """The site and its secrets, or preflight's refusal (kept: every host's deploy raises it)."""
    hosts, group_data = inventory_shape(inventory, inventory_file())
    others = {g: v for g, v in inventory_others(inventory, inventory_file()).items() if g not in run_dict("allowed groups")}
    try:
        secrets = load_secrets(group_data.get("secrets_file"))
    except (SecretsError, TypeError, OSError):
        secrets = None  # check() loads them again and says what is wrong, as a problem
    report = check(hosts, group_data, secrets, others=others)
    if report.errors:
        lines = [str(p) for p in report.warnings + report.errors]
        return Refused("\n".join([*lines, f"preflight: {len(report.errors)} error(s); no host was changed"]))
    print_report(report)
    return build_site(hosts, group_data), secrets


def _site_and_secrets() -> tuple[Site, dict]:
    result = _preflight()
    if isinstance(result, Refused):
        raise result
    return result


def site() -> Site:
    """The site model of the current inventory; the first call runs preflight."""
    return _site_and_secrets()[0]


def secrets() -> dict:
    """Every secret of the site, by name (for rendering files on hosts that are not the
    controllers: the restore rehearsal's)."""
    return _site_and_secrets()[1]


def secret_value(name: str) -> str:
    return _site_and_secrets()[1][name]


def masked(text: str) -> str:
    return mask(text, _site_and_secrets()[1])


def files_of(component: str) -> list[ManagedFile]:
    return files_for(host.name, component)


def files_for(name: str, component: str | None = None) -> list[ManagedFile]:
    """A controller's files (of one component): this host's, or another's for a decision on
    one host that needs them. Rendered once per run and controller (the site and secrets do
    not change within a run; a no-op run otherwise rendered every template ~200 times)."""
    rendered = run_dict("rendered")  # {controller name: its managed files}
    if name not in rendered:
        rendered[name] = managed_files(site(), name, _site_and_secrets()[1])
    return [f for f in rendered[name] if component in (None, f.component)]


def is_first() -> bool:
    return host.name == site().controllers[0].name


def one_at_a_time(names: list[str]):
    """Walk the controllers in order, yielding (name, mine): mine is True on this host's turn.

    Call the step's operation on every host at every turn, with no commands unless it is
    this host's turn (see shell()). pyinfra then orders turn i before turn i+1 (loop
    positions) and every host has the same operations in the same order, so a step runs node
    by node, in inventory order, and nothing of another host's sequence can overtake it:

        for name, mine in one_at_a_time(names):
            shell(f"restart {name}", [...], when=mine)
    """
    for name in host.loop(names):
        yield name, name == host.name


def shell(name: str, commands: list, when: bool):
    """server.shell that every host calls, doing nothing where `when` is false.

    Calling an operation on some hosts only shifts the order pyinfra gives it against the
    other hosts' operations; a no-op keeps every host's sequence aligned.
    """
    return server.shell(name=name, commands=commands if when else [])


@operation()
def turn(commands: list, run: bool = True):
    """
    One node's turn in a rolling step: its commands, unless a controller has failed earlier
    in this run (its restart, join or wait, or its connection), then nothing: no further node
    is touched, and the run ends non-zero on the failed one. Checked when the turn executes.

    + commands: the node's commands (a restart, a join, a wait)
    + run: False makes it a no-op (every host calls every turn; see one_at_a_time)
    """
    if not run or failed_earlier():
        return
    yield from commands


def failed_earlier() -> bool:
    """While executing: whether a controller has failed earlier in this run (said on this
    host's log); a turn, or a change that goes with one, then does nothing."""
    if not state.is_executing:
        return False
    names = {c.name for c in site().controllers}
    failed = sorted(h.name for h in state.failed_hosts if h.name in names)
    if failed:
        host.log(f"not touched: {', '.join(failed)} failed earlier in this run; fix it and re-run "
                 "(what was written and not yet applied is applied then)", logger.error)
    return bool(failed)


def announced() -> dict:
    """This run's announcements: {host name: [(step, action or None)]}."""
    return run_dict("announced")


def announce(ops, action: str) -> None:
    """Say, before anything runs (also with --dry), what a changed config will cause.

    `ops` is an operation, a list of them (announced if any will change) or a bool. Every host
    calls every announce, so step numbers line up across hosts; blast_radius() prints them all
    in the order they will run.
    """
    if isinstance(ops, bool):
        changes = ops
    else:
        ops = ops if isinstance(ops, (list, tuple)) else [ops]
        changes = any(op.will_change for op in ops)
    steps = announced().setdefault(host.name, [])
    steps.append((len(steps), action if changes else None))
    if changes:
        host.log(f"will {action}", logger.warning)


def blast_radius() -> None:
    """Once every host has planned: the restarts and reloads of this run, host by host, in the
    order they will happen (rolling steps in inventory order)."""
    order = [c.name for c in site().controllers]
    finished = run_dict("finished planning")
    finished[host.name] = True
    if len(finished) < len([h for h in inventory.get_active_hosts() if h.name in order]):
        return  # not the last host to finish planning
    planned = announced()
    rows = sorted(
        (step, order.index(name), name, action)
        for name, steps in planned.items() if name in order
        for step, action in steps if action
    )
    if not rows:
        logger.info("--> Blast radius: no service restarts or reloads")
        return
    logger.info("--> Blast radius, in the order the steps run:")
    for i, (_, _, name, action) in enumerate(rows, 1):
        logger.info(f"    {i:>2}. {name}: {action}")


# --- bounded waits ---------------------------------------------------------------------


def wait_until(check: str, what: str, seconds: int = WAIT_SECONDS, on_fail: str = "") -> StringCommand:
    """A shell loop that polls `check` every second, bounded; its failure names host and step."""
    return StringCommand(
        f"for i in $(seq {seconds}); do ({check}) >/dev/null 2>&1 && exit 0; sleep 1; done; "
        f"echo {shlex.quote(f'{host.name}: timed out after {seconds}s waiting for {what}')} >&2; "
        f"{on_fail + '; ' if on_fail else ''}exit 1"
    )


def unit_log(unit: str, lines: int = 25) -> str:
    return f"journalctl -u {unit} -n {lines} --no-pager >&2"
