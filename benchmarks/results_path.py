"""Where a benchmark writes its results: the committed file (or folder) in
``benchmarks/results/`` for a full run; ``benchmarks/results/reduced/`` (ignored by git)
when any option differs from its default, so a quick run never overwrites the committed
figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REDUCED = RESULTS / "reduced"
#: Options that say where or how to run, not what to measure.
NOT_REDUCING = {"worker", "verbose", "device", "quiet"}


def results_path(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    dest: str,
    choosing: frozenset[str] = frozenset(),
) -> Path:
    """``args.<dest>``, moved to ``REDUCED`` when the run is reduced and the path is the
    committed default; says so on stderr. ``choosing``: options that pick which full run
    this is (and so which results file), not a reduction."""
    defaults = parser.parse_args([])
    chosen = Path(getattr(args, dest))
    if chosen != Path(getattr(defaults, dest)):
        return chosen  # the user named the output
    changed = sorted(
        name
        for name, value in vars(args).items()
        if name != dest
        and name not in NOT_REDUCING | choosing
        and value != getattr(defaults, name, value)
    )
    if not changed:
        return chosen
    reduced = REDUCED / chosen.relative_to(RESULTS)
    flags = ", ".join("--" + name.replace("_", "-") for name in changed)
    print(
        f"note: a reduced run ({flags} not at the default): results go to "
        f"{reduced.relative_to(RESULTS.parent.parent)}; the committed ones are left alone",
        file=sys.stderr,
    )
    return reduced
