"""A benchmark run with reduced options never overwrites the committed results."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def test_a_reduced_run_writes_beside_the_committed_results():
    committed = RESULTS / "augment_speed.json"
    before = hashlib.sha256(committed.read_bytes()).hexdigest()
    result = subprocess.run(
        [sys.executable, "benchmarks/augment_speed.py", "--repeats", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "note: a reduced run (--repeats not at the default)" in result.stderr
    assert hashlib.sha256(committed.read_bytes()).hexdigest() == before
    assert (RESULTS / "reduced" / "augment_speed.json").is_file()


@pytest.mark.parametrize(
    "script, options",
    [
        ("equal_budget.py", ["--val-slices", "25-29"]),
        ("mixed_data.py", ["--set", "isbi"]),
        ("training_speed.py", []),
    ],
)
def test_a_benchmark_on_a_missing_data_folder_says_so_in_one_line(script, options, tmp_path):
    missing = tmp_path / "no-such-folder"
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--data", str(missing), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(missing) in errors[0], result.stderr
