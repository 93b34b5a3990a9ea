"""``python train.py ARGS`` and ``python -m unet_hub.cli ARGS`` run in the test's own
process: both faces are ``unet_hub.cli.main``, so a command whose point is its result, its
exit code or its messages needs no Python and torch start-up of its own.

What the process would see is kept: ``sys.argv`` (a trained card records the command from
it) and what it prints on stdout and stderr. Not for what only a separate process shows:
signals that end it, warnings printed by the interpreter (pytest records them instead),
messages that C libraries write to file descriptor 2 (see ``support.cli_batch``).
"""

from __future__ import annotations

import contextlib
import io
import sys

from support.cli_batch import Ran


def _main(seen: list[str], argv: list[str]) -> Ran:
    from unet_hub.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved, sys.argv = sys.argv, seen
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.argv = saved
    return Ran(code, out.getvalue(), err.getvalue())


def train_here(*args: str) -> Ran:
    """``python train.py ARGS``, in this process."""
    return _main(["train.py", *args], ["train", *args])


def cli_here(*args: str) -> Ran:
    """``python -m unet_hub.cli ARGS`` (``unet-hub ARGS``), in this process."""
    import unet_hub.cli

    return _main([unet_hub.cli.__file__, *args], list(args))
