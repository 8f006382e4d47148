"""What every component shares: the site, its secrets, managed files, packages, bounded waits.

Secrets never travel as operation or fact arguments (pyinfra prints those): operations look
them up here by name, commands carry them as HiddenValue, and diffs are masked.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import sys

import gevent.lock

from pyinfra import host, inventory, logger, state
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.operations import server

from config.files import ManagedFile, managed_files
from config.preflight import check, print_report
from config.secrets import load_secrets, mask
from config.site import GROUP, Site, build_site

APT_TIMEOUT = 600  # seconds for one apt-get install; apt has hung forever on lab nodes
WAIT_SECONDS = 300  # cluster joins, Synced, services answering


def once(fn):
    """Compute once per run, shared by every host's deploy (they load in parallel greenlets:
    a lock keeps the others from fetching the same facts again while the first computes)."""
    lock = gevent.lock.BoundedSemaphore()
    cached = []

    def wrapper():
        with lock:
            if not cached:
                cached.append(fn())
        return cached[0]

    wrapper.cache_clear = cached.clear
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _inventory_shape():
    hosts = [(h.name, dict(inventory.get_host_data(h.name))) for h in inventory.get_group(GROUP)]
    return hosts, dict(inventory.get_group_data(GROUP))


@once
def _site_and_secrets() -> tuple[Site, dict]:
    hosts, group_data = _inventory_shape()
    secrets = load_secrets(group_data.get("secrets_file"))
    report = check(hosts, group_data, secrets)
    print_report(report)
    if report.errors:
        print(f"preflight: {len(report.errors)} error(s); no host was changed", file=sys.stderr)
        # SystemExit ends pyinfra cleanly, before any operation runs.
        raise SystemExit(1)
    return build_site(hosts, group_data), secrets


def site() -> Site:
    """The site model of the current inventory; the first call runs preflight."""
    return _site_and_secrets()[0]


def secret(name: str) -> HiddenValue:
    return HiddenValue(_site_and_secrets()[1][name], masked_value=f"<{name}>")


def secret_value(name: str) -> str:
    return _site_and_secrets()[1][name]


def masked(text: str) -> str:
    return mask(text, _site_and_secrets()[1])


def files_of(component: str) -> list[ManagedFile]:
    return managed_files(site(), host.name, _site_and_secrets()[1], component)


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


def announce(ops, action: str) -> None:
    """Say, before anything runs (also with --dry), what a changed config will cause: the
    blast radius of a run, host by host, in the order the steps will run."""
    ops = ops if isinstance(ops, (list, tuple)) else [ops]
    if any(op.will_change for op in ops):
        host.log(f"will {action}", logger.warning)


# --- managed files ---------------------------------------------------------------------


@operation()
def managed_file(path: str, component: str, validate: str | None = None):
    """
    Install one file of config.files (by target path): content from the site's templates,
    compared by SHA1, diffed with secrets masked, owner and mode enforced.

    + path: target path, as listed in config/files.py
    + component: the component that lists it
    + validate: a command with `{path}` run on the new file before it replaces the old one;
      if it fails the old file stays and the run stops with the command's message
    """
    wanted = next(f for f in files_of(component) if f.path == path)
    content = wanted.content
    want_sha = hashlib.sha1(content.encode()).hexdigest()
    remote = host.get_fact(File, path=path)
    current_sha = host.get_fact(Sha1File, path=path) if remote else None

    if current_sha != want_sha:
        if state.config.DIFF:
            current = host.get_fact(FileContents, path=path) if remote else None
            before = [masked(line) + "\n" for line in (current or [])]
            after = masked(content).splitlines(keepends=True)
            host.log(f"{'Will modify' if remote else 'Will create'} {path}", logger.info)
            for line in difflib.unified_diff(before, after, f"{path} (on host)", f"{path} (new)"):
                logger.info("  %s", line.rstrip("\n"))
        target = f"{path}.pyinfra-new" if validate else path
        yield FileUploadCommand(io.StringIO(content), target, remote_temp_filename=host.get_temp_filename(path))
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(target))
        yield StringCommand("chmod", wanted.mode, QuoteString(target))
        if validate:
            check_cmd = validate.format(path=target)
            yield StringCommand(
                f"{check_cmd} || {{ rc=$?; rm -f {target}; echo '{host.name}: {path} failed validation "
                f"({check_cmd}); the old file stays' >&2; exit $rc; }}"
            )
            yield StringCommand("mv", "-f", QuoteString(target), QuoteString(path))
        return

    if remote.get("user") != wanted.user or remote.get("group") != wanted.group:
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(path))
    if remote.get("mode") != int(wanted.mode):
        yield StringCommand("chmod", wanted.mode, QuoteString(path))


def install_files(component: str, validate: dict[str, str] | None = None):
    """managed_file() for every file of a component; returns the operations' metas."""
    validate = validate or {}
    return [
        managed_file(
            name=f"{component}: {f.path}",
            path=f.path,
            component=component,
            validate=validate.get(f.path),
        )
        for f in files_of(component)
    ]


def any_changed(ops) -> callable:
    return lambda: any(op.did_change() for op in ops)


def any_will_change(ops) -> bool:
    return any(op.will_change for op in ops)


# --- packages --------------------------------------------------------------------------


@operation()
def packages(names: list[str]):
    """
    Install Debian packages that are missing; nothing at all (no apt-get update) when every
    one is installed, so a re-run hours later is still a no-op. apt is bounded and retried.

    + names: package names
    """
    installed = host.get_fact(DebPackages) or {}
    missing = [n for n in names if n not in installed]
    if not missing:
        return
    pkgs = " ".join(missing)
    yield StringCommand(
        "export DEBIAN_FRONTEND=noninteractive; "
        "for try in 1 2 3; do "
        f"timeout {APT_TIMEOUT // 2} apt-get update -q -o Acquire::http::Timeout=30 && "
        f"timeout {APT_TIMEOUT} apt-get install -y -q --no-install-recommends "
        f"-o Dpkg::Options::=--force-confold {pkgs} && exit 0; "
        f"echo '{host.name}: apt-get install {pkgs}: try '$try' failed' >&2; sleep 5; done; "
        f"echo '{host.name}: could not install {pkgs} (3 tries, see apt output above)' >&2; exit 1"
    )


# --- bounded waits ---------------------------------------------------------------------


def wait_until(check: str, what: str, seconds: int = WAIT_SECONDS, on_fail: str = "") -> StringCommand:
    """A shell loop that polls `check` every second, bounded; its failure names host and step."""
    return StringCommand(
        f"for i in $(seq {seconds}); do ({check}) >/dev/null 2>&1 && exit 0; sleep 1; done; "
        f"echo '{host.name}: timed out after {seconds}s waiting for {what}' >&2; "
        f"{on_fail + '; ' if on_fail else ''}exit 1"
    )


def unit_log(unit: str, lines: int = 25) -> str:
    return f"journalctl -u {unit} -n {lines} --no-pager >&2"
