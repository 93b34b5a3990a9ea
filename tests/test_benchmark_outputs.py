"""A benchmark run with reduced options never overwrites the committed results."""

from __future__ import annotations

import hashlib
import subprocess
import sys

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
