"""The operations every component uses: its managed files (diffed with secrets masked, a
file that holds a secret never shown; validated before they replace the old), secrets handed
to a command through a 0600 file, packages, services, and the pending markers that carry a
restart or reload a run wrote the config for but did not do to the next run (systemd's
daemon-reload after a unit file too)."""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import shlex

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents

from config.files import FORMER_SECRET_LINES
from facts.host import PENDING_DIR, RELOAD_MARKER, SECRET_DIR
from operations.before import file_state, planned_fact, reload_left, unit_state
from operations.common import APT_TIMEOUT, failed_earlier, files_of, masked, shell, unit_log


# --- managed files ---------------------------------------------------------------------


@operation()
def managed_file(path: str, component: str, validate: str | None = None, validate_what: str | None = None,
                 with_turns: bool = False):
    """
    Install one file of config.files (by target path): content from the site's templates,
    compared by SHA1, diffed with secrets masked, owner and mode enforced.

    + path: target path, as listed in config/files.py
    + component: the component that lists it
    + validate: a command with `{path}` run on the new file before it replaces the old one;
      if it fails the old file stays and the run stops with the command's message
    + validate_what: how the failure names the check (default: the command itself)
    + with_turns: a file written between turns that must stop and start its daemon around it
      (the Erlang cookie): not written either once a controller has failed in this run
    """
    if with_turns and failed_earlier():
        return
    wanted = next((f for f in files_of(component) if f.path == path), None)
    if wanted is None:  # not this host's (the backup node's files): every host calls every file
        return
    content = wanted.content
    remote = file_state(path)

    new_sha1 = hashlib.sha1(content.encode()).hexdigest()
    if remote is None or remote["sha1"] != new_sha1:
        if state.config.DIFF and not state.is_executing:
            host.log(f"{'Will modify' if remote else 'Will create'} {path}", logger.info)
            for line in diff_lines(path, wanted, remote):
                logger.info("  %s", line)
        target = f"{path}.pyinfra-new" if validate else path
        if remote is None:  # a new file: its directory may be new too (a systemd drop-in)
            yield StringCommand("mkdir", "-p", QuoteString(os.path.dirname(path)))
        if wanted.secret:
            # An empty 0600 file first: the upload writes into it, never readable by others.
            yield StringCommand("install", "-m", "600", "/dev/null", QuoteString(target))
        yield FileUploadCommand(io.StringIO(content), target)
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(target))
        yield StringCommand("chmod", wanted.mode, QuoteString(target))
        if validate:
            check_cmd = validate.format(path=shlex.quote(target))
            failed = shlex.quote(f"{host.name}: {path} failed validation ({validate_what or check_cmd}); the old file stays")
            yield StringCommand(f"{check_cmd} || {{ rc=$?; rm -f {shlex.quote(target)}; echo {failed} >&2; exit $rc; }}")
            yield StringCommand("mv", "-f", QuoteString(target), QuoteString(path))
        return

    if (remote["user"], remote["group"]) != (wanted.user, wanted.group):
        yield StringCommand("chown", f"{wanted.user}:{wanted.group}", QuoteString(path))
    if int(remote["mode"], 8) != int(wanted.mode, 8):
        yield StringCommand("chmod", wanted.mode, QuoteString(path))


def diff_lines(path: str, wanted, remote: dict | None) -> list[str]:
    """What --diff shows of a file that changes: a unified diff with secrets masked; for a file
    that holds a secret (ManagedFile.secret: only a secret, config.files) one line, no hash
    (a SHA1 of a low-entropy password file is a crackable hash), its content never fetched."""
    if wanted.secret:
        return ["changed (content hidden)" if remote else "new (content hidden)"]
    current = host.get_fact(FileContents, path=path) if remote else None
    before = [FORMER_SECRET_LINES.sub(r"\1(hidden)", masked(line)) + "\n" for line in (current or [])]
    after = masked(wanted.content).splitlines(keepends=True)
    return [line.rstrip("\n") for line in difflib.unified_diff(before, after, f"{path} (on host)", f"{path} (new)")]


def secret_input(name: str, content: str) -> tuple[list, str]:
    """Hand a secret to a command on the host without a command line (every command is an
    argument of `sh -c`, visible in `ps` to every local user): the commands that put `content`
    in a 0600 file of the root-only SECRET_DIR, uploaded over SFTP, and its path. The command
    that reads it (on stdin: `< path`) removes it (see consume())."""
    path = f"{SECRET_DIR}/{name}"
    return [StringCommand(f"install -d -m 700 {SECRET_DIR} && install -m 600 /dev/null {path}"),
            FileUploadCommand(io.StringIO(content), path)], path


def consume(command: str, path: str) -> str:
    """`command` with the secret file `path` on its stdin, the file removed whatever the outcome."""
    return f"{command} < {path}; rc=$?; rm -f {path}; exit $rc"


def install_files(component: str, validate: dict[str, str | tuple[str, str]] | None = None,
                  with_turns: tuple[str, ...] = (), paths: tuple[str, ...] | None = None):
    """managed_file() for every file of a component; returns the operations' metas.
    `paths`: every path the component may install, called on every host alike (a component whose
    files only some controllers get: the others' calls are no-ops, the order stays aligned).
    `validate`: {path: command} or {path: (command, how its failure names it)}; `with_turns`:
    the paths managed_file(with_turns=True) writes."""
    checks = {path: (v, None) if isinstance(v, str) else v for path, v in (validate or {}).items()}
    return [
        managed_file(
            name=f"{component}: {path}",
            path=path,
            component=component,
            validate=checks.get(path, (None, None))[0],
            validate_what=checks.get(path, (None, None))[1],
            with_turns=path in with_turns,
        )
        for path in (paths if paths is not None else [f.path for f in files_of(component)])
    ]


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
    installed = planned_fact(DebPackages) or {}
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


# --- services --------------------------------------------------------------------------

def pending(unit: str) -> bool:
    """A restart or reload of `unit` that an earlier run wrote the config for but did not do."""
    return bool(unit_state(unit).get("pending"))


def will_change(component: str, paths=None) -> bool:
    """Whether the content of a component's file (of those at `paths`, default all) will change."""
    wanted = [f for f in files_of(component) if paths is None or f.path in paths]
    remote = {f.path: file_state(f.path) for f in wanted}
    return any(remote[f.path] is None or remote[f.path]["sha1"] != hashlib.sha1(f.content.encode()).hexdigest()
               for f in wanted)


def mark_pending(unit: str, component: str, paths=None) -> bool:
    """Before a component's files: when one of their contents will change, a marker that
    `unit` must restart or reload, cleared once it did (service(), or the rolling step). A run
    interrupted in between (Ctrl-C, a lost connection, a failed peer) is applied by the next.
    Returns whether the unit must restart or reload: a file changes, or a marker was left.
    `paths`: only these of the component's files are the unit's (several units, one component)."""
    changes = will_change(component, paths)
    shell(f"{component}: {unit} restart or reload pending", [f"mkdir -p {PENDING_DIR} && touch {PENDING_DIR}/{unit}"],
          when=changes)
    return changes or pending(unit)


def clear_pending(unit: str) -> str:
    return f"rm -f {PENDING_DIR}/{unit}"


def start_or_fail(unit: str, command: str) -> str:
    """Shell: `command` (a bounded start or restart of `unit`), and when it fails the unit's last
    journal lines on stderr and the step failed: the log says why the unit did not come up,
    where a bare timeout would not. Pure."""
    return f"{command} || {{ {unit_log(unit)}; exit 1; }}"


def mark_reload(component: str, paths=None) -> bool:
    """Before a component's systemd unit files or drop-ins (those at `paths`, default all its
    files): when one will change, a marker that systemd must reload its units; returns whether
    the daemon-reload is due: a unit file changes, or an earlier run left the marker. Without
    it, a run cut between the file and its daemon-reload leaves systemd on the old unit for
    good: the next run sees no file change. daemon_reload() does it and clears the marker.
    A daemon-reload restarts nothing: a restart is the caller's (mark_pending, service)."""
    changes = will_change(component, paths)
    shell(f"{component}: systemd daemon-reload pending", [f"mkdir -p {PENDING_DIR} && touch {reload_marker(component)}"],
          when=changes)
    return changes or reload_left(component)


def daemon_reload(name: str, component: str, due: bool, before: tuple = ()):
    """After the component's unit files: `systemctl daemon-reload` when mark_reload() said it is
    due, its marker cleared in the same command once it succeeded. `before`: commands of the
    same step that go first (HAProxy's state directory)."""
    return shell(name, [*before, f"systemctl daemon-reload && rm -f {reload_marker(component)}"], when=due)


def reload_marker(component: str) -> str:
    return f"{PENDING_DIR}/{RELOAD_MARKER}{component}"


@operation()
def service(unit: str, reloaded: bool = False, restarted: bool = False, skip: bool = False, keep_pending: bool = False):
    """
    A unit enabled and running; reloaded or restarted when asked (a unit that was not
    running is just started), then its pending marker cleared.

    + unit: one of UNITS
    + reloaded: reload it (its config changed; connections survive)
    + restarted: restart it
    + skip: leave it as it is (a controller in maintenance: its RabbitMQ stays stopped)
    + keep_pending: leave its marker (a rolling restart later in the run clears it)
    """
    if skip:
        return
    st = unit_state(unit)
    if st.get("enabled") not in ("enabled", "static", "generated", "alias", "indirect"):
        yield f"systemctl enable {unit}"
    if st.get("active") != "active":
        # Not running before the run; a package install may have started it since, with its
        # default config: a changed config restarts it, otherwise it is started if need be.
        if restarted or reloaded:
            yield start_or_fail(unit, f"timeout 300 systemctl restart {unit}")
        else:
            yield start_or_fail(unit, f"systemctl is-active -q {unit} || timeout 300 systemctl start {unit}")
    elif restarted:
        yield start_or_fail(unit, f"timeout 300 systemctl restart {unit}")
    elif reloaded:
        yield f"systemctl reload {unit}"
    if (restarted or reloaded or st.get("pending")) and not keep_pending:
        yield clear_pending(unit)
