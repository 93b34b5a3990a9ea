"""Several ``unet-hub`` command lines in one Python process, each seen as if run alone.

``python -m unet_hub.cli ARGS`` costs a Python and torch start-up (seconds on a busy
2-core machine) before any work; a table of cases that each run one short command pays it
per row. ``run_batch`` pays it once: one child process runs every command line through
``unet_hub.cli.main`` and gives back, for each, what a separate process would show:

- the exit code (``main``'s return value, or the code of a ``SystemExit``);
- stdout and stderr as file descriptors 1 and 2 received them, so C libraries' own
  messages (libpng's) are in them too;
- Python's warning filters as the child started with them, and the record of warnings
  already shown emptied, for each command: a warning shows once per command, as in a
  fresh process.

The child is started as ``python -m support.cli_batch`` with the commands as JSON on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


@dataclass
class Ran:
    """What one command line did."""

    returncode: int
    stdout: str
    stderr: str


def run_batch(
    commands: dict[str, list[str]],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> dict[str, Ran]:
    """Run each ``unet-hub`` argv of ``commands`` (by key), in order, in one child process
    with the environment ``env`` (default: this one's)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "support.cli_batch"],
        input=json.dumps(commands),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"the batch of commands failed:\n{done.stderr[-3000:]}"
    results = json.loads(done.stdout)
    return {key: Ran(**results[key]) for key in commands}


def _run_one(argv: list[str]) -> dict:
    """``main(argv)`` with fds 1 and 2 going to files, and fresh warning filters."""
    import unet_hub.cli

    sys.argv = [unet_hub.cli.__file__, *argv]  # as `python -m unet_hub.cli ARGV` sees it
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            # a fresh interpreter's filters (main may change them), and the registries of
            # warnings already shown emptied (entering catch_warnings does that)
            with warnings.catch_warnings():
                try:
                    code = unet_hub.cli.main(argv)
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else 1
                except Exception:  # what the interpreter does with an uncaught one
                    traceback.print_exc()
                    code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return {
            "returncode": code,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def _main() -> None:
    commands = json.loads(sys.stdin.read())
    results = {key: _run_one(argv) for key, argv in commands.items()}
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    _main()
