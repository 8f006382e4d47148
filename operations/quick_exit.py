"""A pyinfra run's exit without a collection over every object it still holds.

When the interpreter exits, CPython finalizes its modules and runs the cyclic garbage collector
over what is left: after a deploy that is the whole run (the plan of every host, the facts,
pyinfra's state), and it was ~0.1 s of every run's wall time on the lab (a no-op's ~1.2 s;
tests/bench/deploy.py). gc.freeze() at exit moves those objects to the permanent generation,
which those collections skip; everything is still released by reference counting, and the
operating system takes the rest back with the process. Registered once per process, at import.
"""

from __future__ import annotations

import atexit
import gc

atexit.register(gc.freeze)
