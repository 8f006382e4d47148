"""operations/pyinfra_args.py: pyinfra's global argument list kept once per process gives the
same answer as pyinfra's own function, and operations get the same arguments."""

from __future__ import annotations

from typing import get_type_hints

import pyinfra.api.arguments as arguments

import unitkit  # noqa: F401  (the repository on sys.path)
from operations import pyinfra_args


def test_installed_for_the_pinned_pyinfra():
    assert pyinfra_args.PYINFRA_VERSION == pyinfra_args.PINNED, \
        "pyinfra is not the pinned version: check pyinfra_args against its all_global_arguments()"
    assert pyinfra_args.install()
    assert arguments.all_global_arguments.kept_by == "operations.pyinfra_args"


def test_same_answer_as_pyinfra_and_a_new_list_each_call():
    pyinfra_args.install()
    first, second = arguments.all_global_arguments(), arguments.all_global_arguments()
    assert first == list(get_type_hints(arguments.AllArguments).items()) == arguments.all_global_arguments.__wrapped__()
    assert first is not second  # a caller changing its list changes no other's
    first.clear()
    assert arguments.all_global_arguments() == second


def test_installing_twice_keeps_one_layer():
    pyinfra_args.install()
    kept = arguments.all_global_arguments
    assert pyinfra_args.install() and arguments.all_global_arguments is kept
