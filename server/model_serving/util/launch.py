"""Parent-death for our children, and a launcher that gives it to a third-party script.

`python -P .../launch.py SCRIPT ARGS...` arms the parent-death signal, then runs SCRIPT as
`__main__` with ARGS, as `python SCRIPT ARGS...` would (its folder first on sys.path). It imports
nothing of model_serving, so the short-lived quantize worker can load it by path cheaply too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# The child compares this with its real parent: if they differ, the parent died before the
# parent-death signal was armed, and the child must not outlive it.
PARENT_ENV = "MODEL_SERVING_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_libc: list[ctypes.CDLL] = []  # loaded once: outlive_parent must take effect at once when the engine is ready


def _prctl(option: int, value: int) -> None:
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    _libc[0].prctl(option, value, 0, 0, 0)


def die_with_parent() -> None:
    """In a child, at start-up: have the kernel SIGKILL us when our parent dies (Linux; elsewhere a no-op).

    The kernel sends it when the thread that started us exits; our spawning threads wait on the child.
    """
    if not sys.platform.startswith("linux"):
        return
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    expected = os.environ.get(PARENT_ENV, "")
    if expected.isdigit() and os.getppid() != int(expected):
        os._exit(137)  # the parent is already gone: end as if the signal had fired


def set_parent_death() -> None:
    """Arm the parent-death signal and nothing else: a `preexec_fn` for a single-threaded parent's own child."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def outlive_parent() -> None:
    """Undo `die_with_parent`: for a child that becomes a daemon once it is ready (the engine worker)."""
    if sys.platform.startswith("linux"):
        _prctl(_PR_SET_PDEATHSIG, 0)


def main(argv: list[str]) -> None:
    import runpy  # here, not at the top: the quantize worker loads this file for die_with_parent alone

    die_with_parent()
    if not argv:
        sys.exit("usage: launch.py SCRIPT [ARGS...]")
    script = os.path.abspath(argv[0])
    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
