"""facts/probe.py: cached_by_file(), an answer kept while its file stays the same one; run with
sh here against files of a temporary directory."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import facts.probe as P


@pytest.fixture
def cert(tmp_path, monkeypatch):
    """(a file the answer depends on, the file each run of the command appends to), the cache in tmp_path."""
    monkeypatch.setattr(P, "CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "cert.pem"
    f.write_text("one\n")
    return f, tmp_path / "runs"


def run(tmp_path, path, command):
    text = P.cached_by_file(str(path), "answer", command)
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30)
    return out.stdout, out.returncode


def test_an_answer_is_kept_while_the_file_is_the_same_one(tmp_path, cert):
    f, runs = cert
    command = f"echo x >>{runs}; echo notAfter=$(cat {f})"
    assert run(tmp_path, f, command) == ("notAfter=one\n", 0)
    assert run(tmp_path, f, command) == ("notAfter=one\n", 0)
    assert runs.read_text() == "x\n"  # the second answer was the kept one
    assert oct(os.stat(tmp_path / "cache").st_mode & 0o777) == "0o700"

    time.sleep(0.01)
    f.write_text("two\n")  # the same size, inode and (maybe) second: its ctime moved
    assert run(tmp_path, f, command) == ("notAfter=two\n", 0)
    assert runs.read_text() == "x\nx\n"

    f.unlink()
    f.write_text("two\n")  # replaced: another inode
    run(tmp_path, f, command)
    assert runs.read_text() == "x\nx\nx\n"


def test_a_failed_answer_and_a_missing_file_are_never_kept(tmp_path, cert):
    f, runs = cert
    failing = f"echo x >>{runs}; echo 'Could not read'; exit 3"
    assert run(tmp_path, f, failing) == ("Could not read\n", 3)
    assert run(tmp_path, f, failing) == ("Could not read\n", 3)
    assert runs.read_text() == "x\nx\n"
    missing = tmp_path / "none.pem"
    run(tmp_path, missing, f"echo x >>{runs}")
    run(tmp_path, missing, f"echo x >>{runs}")
    assert runs.read_text() == "x\n" * 4


def test_without_a_writable_directory_the_command_runs_each_time(tmp_path, cert, monkeypatch):
    f, runs = cert
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(P, "CACHE_DIR", str(blocked / "cache"))  # under a file: mkdir fails
    assert run(tmp_path, f, f"echo x >>{runs}; echo ok") == ("ok\n", 0)
    assert run(tmp_path, f, f"echo x >>{runs}; echo ok") == ("ok\n", 0)
    assert runs.read_text() == "x\nx\n"
