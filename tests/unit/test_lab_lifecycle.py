"""lab/lifecycle.py's pure part: which nodes `up` brings up."""

import pytest

import unitkit  # noqa: F401  (first: puts the repository on sys.path)
from lab.lifecycle import nodes_to_bring_up
from lab.names import LabError


def test_up_starts_every_node_with_a_disk_not_only_the_first_n():
    # `make lab-down` of a 4-node lab, then `make lab-up` (--nodes 3): the inventory lists node04 too
    assert nodes_to_bring_up(3, ["node01", "node02", "node03", "node04"]) == ["node01", "node02", "node03", "node04"]


def test_up_creates_the_first_n_when_the_lab_has_fewer():
    assert nodes_to_bring_up(3, []) == ["node01", "node02", "node03"]
    assert nodes_to_bring_up(4, ["node02"]) == ["node01", "node02", "node03", "node04"]
    assert nodes_to_bring_up(1, ["node01"]) == ["node01"]


def test_nodes_come_in_number_order():
    assert nodes_to_bring_up(2, ["node09", "node03"]) == ["node01", "node02", "node03", "node09"]


@pytest.mark.parametrize("bad", [0, 10, "3", None])
def test_a_count_out_of_range_is_refused(bad):
    with pytest.raises(LabError, match="--nodes must be between 1 and 9"):
        nodes_to_bring_up(bad, [])


def test_a_node_started_again_keeps_the_keys_the_deploy_authorized(tmp_path, monkeypatch):
    """provision() at every `lab up` writes the lab's key into a node's authorized_keys: the
    backup node's key the deploy authorized there (its copies) stays; an older lab key goes."""
    from lab import images

    key = tmp_path / "id"
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAnew halab\n")
    monkeypatch.setattr(images, "SSH_KEY", str(key))
    path = tmp_path / "authorized_keys"
    backup_line = 'restrict,from="10.77.0.13" ssh-ed25519 AAAAbackup openstack-ha-backup@node03'
    path.write_text(f"ssh-ed25519 AAAAold halab\n{backup_line}\n")
    assert images.authorized_keys(path) == f"ssh-ed25519 AAAAnew halab\n{backup_line}\n"
    assert images.authorized_keys(tmp_path / "none") == "ssh-ed25519 AAAAnew halab\n"
