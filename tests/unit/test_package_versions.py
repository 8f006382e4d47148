"""package_versions, the site key: preflight's checks, the pins file it adds (Pin-Priority
999: never a forced downgrade), and what a deploy without it does (no fact of its own, no file;
a pins file an earlier run left is removed, announced)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import unitkit  # noqa: F401
from unitkit import FAKE_SECRETS, lab_data
from config.files import APT_PINS, managed_files
from config.preflight import check
from config.site import build_site
from operations.before import upgrade_parts

M19 = "1:10.11.19-0+deb12u1"
MARIADB = {"mariadb-server": M19, "mariadb-client": M19, "mariadb-backup": M19}


def problems(pins, **changes):
    hosts, group = lab_data()
    report = check(hosts, {**group, "package_versions": pins, **changes}, dict(FAKE_SECRETS))
    return [str(p) for p in report.errors]


@pytest.mark.parametrize("pins", [{}, {"haproxy": "2.6.12-1+deb12u4"}, MARIADB, {"rabbitmq-server": "3.10.8-1.1"},
                                  {"socat": "1.7.4.4-2", "nftables": "1.0.6-2+deb12u2"}])
def test_valid_pins_pass(pins):
    assert problems(pins) == []


def test_nftables_only_with_the_firewall():
    assert problems({"nftables": "1.0.6-2+deb12u2"}) == []
    (error,) = problems({"nftables": "1.0.6-2+deb12u2"}, firewall=False)
    assert "package_versions.nftables: nftables is installed only with the host firewall" in error
    assert error.endswith("fix: remove it from package_versions, or set firewall True")


@pytest.mark.parametrize("pins,expected", [
    ({"mariadb-servr": M19}, "package_versions.mariadb-servr: mariadb-servr is not a package the deploy installs "
                             "(did you mean mariadb-server?); fix: remove it from package_versions, or name one of curl, galera-4,"),
    ({"nginx": "1.22.1-9"}, "package_versions.nginx: nginx is not a package the deploy installs; fix: remove it"),
    ({"haproxy": "latest"}, "package_versions.haproxy: 'latest' is not a Debian version"),
    ({"haproxy": "2.6.12-1+deb12u4\n"}, "package_versions.haproxy: '2.6.12-1+deb12u4\\n' is not a Debian version"),
    ({"haproxy": "x:2.6"}, "package_versions.haproxy: 'x:2.6' has an epoch that is not a number"),
    ({"haproxy": 2.6}, "package_versions.haproxy: 2.6 is not a string"),
    ({"Haproxy": "2.6"}, "package_versions.Haproxy: unknown name:"),
    ({"mariadb-server": M19}, "package_versions: mariadb-server, mariadb-client, mariadb-backup are built from one source"
                              " and upgraded together: mariadb-server 1:10.11.19-0+deb12u1, mariadb-client (not pinned)"),
    ({**MARIADB, "mariadb-backup": "1:10.11.18-0+deb12u1"}, "fix: pin all of mariadb-server, mariadb-client, mariadb-backup to one version"),
    ("haproxy", "package_versions: 'haproxy' is not a dict"),
])
def test_wrong_pins_are_refused_with_the_fix(pins, expected):
    errors = problems(pins)
    assert len(errors) == 1 and expected in errors[0], errors
    assert errors[0].startswith("error: controllers: package_versions")


@pytest.mark.parametrize("size,error", [("512M", None), ("128M", None), ("1G", None), ("64M", "64M is below Galera's default (128M)"),
                                        ("127M", "127M is below")])
def test_gcache_size_has_a_floor(size, error):
    """An upgrade turn rejoins by IST only with a gcache that holds what the node missed."""
    errors = problems({}, galera_gcache_size=size)
    if error is None:
        assert errors == []
        hosts, group = lab_data()
        site = build_site(hosts, {**group, "galera_gcache_size": size})
        (cnf,) = [f for f in managed_files(site, hosts[0][0], FAKE_SECRETS) if f.path.endswith("galera.cnf")]
        assert f"gcache.size={size};" in cnf.content
    else:
        (got,) = errors
        assert got.startswith("error: controllers: galera_gcache_size: ") and error in got
        assert got.endswith("fix: set galera_gcache_size to 128M or more (default 512M)")


def test_the_pins_file_only_with_a_pin():
    hosts, group = lab_data()
    plain = build_site(hosts, group)
    assert APT_PINS not in {f.path for f in managed_files(plain, hosts[0][0], FAKE_SECRETS)}
    assert upgrade_parts(plain) == ()  # no fact read on the hosts: the default deploy runs no new command
    pinned = build_site(hosts, {**group, "package_versions": {"rabbitmq-server": "3.10.8-1.1", "haproxy": "2.6.12-1+deb12u4"}})
    (pins,) = [f for f in managed_files(pinned, hosts[0][0], FAKE_SECRETS) if f.path == APT_PINS]
    stanzas = [s for s in pins.content.split("\n\n")]
    assert [next(line for line in s.splitlines() if line.startswith("Package:")) for s in stanzas] == [
        "Package: haproxy", "Package: rabbitmq-server"]
    assert "Pin: version 2.6.12-1+deb12u4\nPin-Priority: 999" in stanzas[0]
    # Below 1000 in every stanza: 1000 or more makes apt downgrade to the pin (apt_preferences(5)).
    priorities = [int(line.split(":")[1]) for line in pins.content.splitlines() if line.startswith("Pin-Priority:")]
    assert len(priorities) == 2 and all(990 < p < 1000 for p in priorities), priorities
    assert [p[0].rpartition(":")[2] for p in upgrade_parts(pinned)] == ["PackageVersions", "RabbitmqFeatureFlags"]
    assert upgrade_parts(pinned)[0][1] == (("names", ("haproxy", "rabbitmq-server")),)


# --- the pins file as this machine's apt reads it -----------------------------------------------
# A private apt (its own sources, lists, dpkg status and preferences, in a temporary directory):
# a local repository offering haproxy 1.0-1, 2.0-1 and 3.0-1, one of them "installed". Nothing of
# the machine's apt state is read or written; no network.

AVAILABLE = ("1.0-1", "2.0-1", "3.0-1")


def apt_candidate(tmp_path, installed: str, pins_file: str) -> str:
    """The version `apt-get install haproxy` would take with this pins file."""
    assert shutil.which("apt-get") and shutil.which("apt-cache"), \
        "apt is needed to read the pins file as the controllers do (a Debian host)"
    repo, state, prefs = tmp_path / "repo", tmp_path / "state", tmp_path / "preferences.d"
    for d in (repo, state / "lists" / "partial", tmp_path / "cache" / "archives" / "partial", prefs):
        d.mkdir(parents=True, exist_ok=True)
    stanza = "Package: haproxy\nVersion: {v}\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    (repo / "Packages").write_text("\n".join(
        stanza.format(v=v) + f"Filename: haproxy_{v}_all.deb\nSize: 1\nSHA256: {'0' * 64}\n" for v in AVAILABLE))
    (state / "status").write_text(stanza.format(v=installed) + "Status: install ok installed\n")
    (tmp_path / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    (prefs / "openstack-ha.pref").write_text(pins_file)
    options = [f"-o{k}={v}" for k, v in {
        "Dir::State": state, "Dir::State::status": state / "status", "Dir::Cache": tmp_path / "cache",
        "Dir::Etc::SourceList": tmp_path / "sources.list", "Dir::Etc::SourceParts": tmp_path / "none",
        "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": prefs,
        "APT::Sandbox::User": "root", "Debug::NoLocking": "1"}.items()]
    update = subprocess.run(["apt-get", *options, "update", "-q"], capture_output=True, text=True, timeout=60)
    assert update.returncode == 0, update.stdout + update.stderr
    policy = subprocess.run(["apt-cache", *options, "policy", "haproxy"], capture_output=True, text=True, timeout=60)
    assert f"Installed: {installed}" in policy.stdout, policy.stdout + policy.stderr
    return next(line.split(":", 1)[1].strip() for line in policy.stdout.splitlines() if "Candidate:" in line)


def pins_file(version: str) -> str:
    hosts, group = lab_data()
    site = build_site(hosts, {**group, "package_versions": {"haproxy": version}})
    return next(f.content for f in managed_files(site, hosts[0][0], FAKE_SECRETS) if f.path == APT_PINS)


@pytest.mark.parametrize("installed,pin,candidate", [
    ("2.0-1", "2.0-1", "2.0-1"),  # held: the newer 3.0-1 is not taken
    ("1.0-1", "2.0-1", "2.0-1"),  # moved to the pin, never past it
    ("2.0-1", "3.0-1", "3.0-1"),  # an upgrade pin: apt takes it
])
def test_apt_holds_the_pin(tmp_path, installed, pin, candidate):
    assert apt_candidate(tmp_path, installed, pins_file(pin)) == candidate


def test_apt_never_goes_down_to_a_pin(tmp_path):
    """A pin below the installed version (the plan refuses it, but a file written earlier and a
    package upgraded by hand make one): apt does not downgrade; at 1001 it would (the control:
    why the file says 999)."""
    ours = pins_file("1.0-1")
    assert apt_candidate(tmp_path / "999", "2.0-1", ours) != "1.0-1"
    assert apt_candidate(tmp_path / "1001", "2.0-1", ours.replace("Pin-Priority: 999", "Pin-Priority: 1001")) == "1.0-1"


# --- the deploy's wiring, planned offline (tests/unit/opkit.py) -------------------------------

def _plan_upgrade(case):
    import opkit
    from pyinfra.context import ctx_host

    from operations import upgrade
    from operations.common import announced

    with opkit.planning(case) as (_, inventory):
        for h in inventory:
            with ctx_host.use(h):
                upgrade.configure()
        return {n: list(steps) for n, steps in announced().items()}


def _case(name="pinned_haproxy"):
    import opkit

    return opkit.load_case(opkit.CASES / "upgrade" / f"{name}.json")


def test_the_upgrade_is_announced_turn_by_turn():
    """Every host announces every turn (the steps line up); the blast radius's rows, sorted by
    step, are the turns: the writer node01 last (the deployed case's VIP holder is node01)."""
    got = _plan_upgrade(_case())
    rows = sorted((step, name, action) for name, steps in got.items() for step, action in steps if action)
    line = "haproxy 2.6.12-1+deb12u3 → 2.6.12-1+deb12u4, rolling (drain, stop haproxy, upgrade, start, back)"
    assert [(name, action.startswith(line)) for _, name, action in rows] == [
        ("node02", True), ("node03", True), ("node01", True)]
    assert {len(steps) for steps in got.values()} == {3}


def test_a_downgrade_pin_ends_the_run_before_any_change():
    """Refused (operations/common.py): printed once by pyinfra's command line, exit status 1,
    no traceback; raised while planning, so no operation of any host runs."""
    from operations.common import Refused

    case = _case()
    case["facts"]["*"]["PackageVersions"]["installed"] = {"haproxy": "2.6.12-1+deb12u5"}
    with pytest.raises(Refused) as refused:
        _plan_upgrade(case)
    said = str(refused.value)
    assert said.startswith("package_versions: refused before any change:\n")
    assert "node01: haproxy 2.6.12-1+deb12u5 → 2.6.12-1+deb12u4 is a downgrade" in said


def test_a_package_not_yet_installed_is_announced_as_installed_by_this_run():
    case = _case()
    case["facts"]["*"]["PackageVersions"]["installed"] = {"haproxy": None}
    got = _plan_upgrade(case)
    actions = [action for steps in got.values() for _, action in steps if action]
    assert actions == ["haproxy (not installed) → 2.6.12-1+deb12u4, install"] * 3


def test_the_vip_holder_takes_the_last_turn():
    case = _case()
    case["facts"]["node01"]["VipHolder"] = {"holds_vip": False}
    case["facts"].setdefault("node02", {})["VipHolder"] = {"holds_vip": True}
    got = _plan_upgrade(case)
    rows = sorted((step, name) for name, steps in got.items() for step, action in steps if action)
    assert [name for _, name in rows] == ["node03", "node01", "node02"]


def test_a_pins_file_left_by_an_earlier_run_is_removed_and_announced():
    """package_versions emptied again: the file an earlier run wrote is removed, and --dry and
    the blast radius say so on every node; without the file, nothing is announced."""
    got = _plan_upgrade(_case("unpinned_file_left"))
    assert {n: [a for _, a in steps if a] for n, steps in got.items()} == {
        n: [f"remove {APT_PINS}: package_versions is empty, apt's candidates are no longer held"]
        for n in ("node01", "node02", "node03")}
    case = _case("unpinned_file_left")
    case["facts"]["*"]["FileStates"] = "$deployed"  # no pins file there
    assert all(a is None for steps in _plan_upgrade(case).values() for _, a in steps)


def test_the_pins_file_is_read_also_without_a_pin():
    """Its state comes with the managed files' (the same round trip): a site that pins nothing
    reads it too, or a file left there would never be seen, nor removed."""
    import opkit
    from pyinfra.context import ctx_host

    from operations.before import prefetch

    with opkit.planning(_case("unpinned_file_left")) as (_, inventory):
        with ctx_host.use(inventory.get_host("node01")):
            (paths,) = [dict(kw)["paths"] for name, kw in prefetch("node01") if name.endswith(":FileStates")]
    assert APT_PINS in paths and len(paths) == len(set(paths))
