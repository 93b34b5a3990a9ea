"""Mutation score of the core modules (`make mutation`; too slow for CI).

For each module of ``MODULES``, mutmut (configured under ``[tool.mutmut]`` in
pyproject.toml) mutates that module only and runs only its fast unit tests, in a copy
of the project under ``.mutation/<name>/`` so the working tree is never touched. Each
module has a time cap; the caps keep the whole run bounded on a shared 2-core machine.

    python benchmarks/mutation.py                 # every module
    python benchmarks/mutation.py metrics masks   # some of them
    MUTATION_CHILDREN=2 python benchmarks/mutation.py

Writes ``benchmarks/results/mutation.json`` (per module: killed, survived, timed out,
not checked, and each survivor's diff). The report ``benchmarks/results/mutation.md``
explains each survivor (equivalent, or killed by a later test) and is written by hand
from it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
RESULTS = Path(os.environ.get("MUTATION_RESULTS", ROOT / "benchmarks/results/mutation.json"))

#: name: (the module mutated, the fast tests that state its behaviour, time cap in s)
MODULES: dict[str, tuple[str, list[str], int]] = {
    "metrics": ("unet_hub/evaluate/metrics.py", ["tests/test_metrics.py"], 900),
    "masks": (
        "unet_hub/data/masks.py",
        ["tests/test_data.py"],
        900,
    ),
    "tiling": (
        "unet_hub/infer/tiling.py",
        ["tests/test_inference.py", "-k", "tile or mirror or ramps or seams or pass or field"],
        900,
    ),
    "weights": (
        "unet_hub/model/weights.py",
        ["tests/test_packaging.py", "tests/test_honest_cards.py", "-k",
         "transfer or not honest_cards"],
        600,
    ),
    "config": (
        "unet_hub/model/config.py",
        ["tests/test_model.py", "tests/test_packaging.py", "tests/test_mask_values.py", "-k",
         "not colour_mask_data_set and not without_mask_values"],
        900,
    ),
    "run_folder": (
        "unet_hub/train/run_folder.py",
        ["tests/test_best_model.py", "-k", "not middle_epoch"],
        600,
    ),
    "checkpoint": (
        "unet_hub/train/checkpoint.py",
        ["tests/test_resume.py", "-k",
         "checkpoint_ and not each_epoch and not full_disk or damaged"],
        600,
    ),
    "app_threshold": (
        "unet_hub/app/threshold.py",
        ["tests/test_app_views.py", "-k", "not slider_move"],
        600,
    ),
    "images": (
        "unet_hub/data/images.py",
        # not tests/test_bad_inputs.py: mutmut hangs on its test ids with a "×" in them
        ["tests/test_data.py", "tests/test_anydata.py", "-k",
         "not anydata or formula or gain or unknown"],
        1200,
    ),
}  # fmt: skip

#: Modules mutated only in these functions (``Class.method`` for a method): the rest of
#: the module is another concern, with its own (slower) tests.
FUNCTIONS: dict[str, list[str]] = {
    "images": [
        "PixelLimitError.__init__", "_what_it_is", "_tiff_geometry", "_header",
        "check_image_file", "scaling_statistics", "scale_to_unit",
    ],
}  # fmt: skip

#: mutmut stops a mutant's tests after (estimate + 1) × this × 2 CPU seconds, or half
#: that in wall time; its default (15) turns slow runs on a loaded machine into timeouts.
TIMEOUT_MULTIPLIER = 60


def mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mutmut")
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [str(exe), *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
    )


def prepare(name: str, module: str, tests: list[str]) -> Path:
    """A copy of the tracked project with ``[tool.mutmut]`` narrowed to ``module``."""
    work = WORK / os.environ.get("MUTATION_TAG", "") / name
    shutil.rmtree(work, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for file in files:
        source = ROOT / file
        if source.is_file():
            (work / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / file)
    pyproject = work / "pyproject.toml"
    text = pyproject.read_text()
    selection = json.dumps(tests)
    text = text.replace(
        "[tool.mutmut]\n",
        f'[tool.mutmut]\nonly_mutate = ["{module}"]\n'
        f"pytest_add_cli_args_test_selection = {selection}\n"
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}\n",
    )
    pyproject.write_text(text)
    tomllib.loads(text)  # still valid
    return work


def statuses(work: Path, only: list[str]) -> dict[str, str]:
    """Every mutant's status (``--all``), or only those matching the globs ``only``."""
    listed = mutmut(work, "results", "--all", "true").stdout
    found = {}
    for line in listed.splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match and (not only or any(fnmatch.fnmatch(match[1], g) for g in only)):
            found[match[1]] = match[2]
    return found


def counted(found: dict[str, str]) -> dict[str, int]:
    """``found``'s statuses counted with the keys of ``mutmut export-cicd-stats``."""
    stats = dict.fromkeys(("killed", "survived", "no_tests", "timeout", "segfault"), 0)
    for status in found.values():
        key = status.replace(" ", "_")
        stats[key] = stats.get(key, 0) + 1
    return stats | {"total": len(found)}


def survivors(work: Path, only: list[str] | None = None) -> list[dict[str, str]]:
    """Each mutant mutmut did not kill (of those matching ``only``), with its status and
    diff."""
    found = []
    for mutant, status in statuses(work, only or []).items():
        if status == "killed":
            continue
        # a mutant no selected test reaches, or that the time cap left unchecked, needs no
        # diff to explain (and `show` is slow)
        skip = status in ("no tests", "not checked")
        diff = "" if skip else mutmut(work, "show", mutant).stdout
        found.append({"mutant": mutant, "status": status, "diff": diff})
    return found


def run_module(name: str) -> dict:
    module, tests, cap = MODULES[name]
    work = prepare(name, module, tests)
    children = os.environ.get("MUTATION_CHILDREN", "2")
    dotted = module.removesuffix(".py").replace("/", ".")
    only = [
        f"{dotted}.x{'ǁ'.join(['', *f.split('.')]) if '.' in f else '_' + f}__mutmut_*"
        for f in FUNCTIONS.get(name, [])
    ]
    started = time.monotonic()
    try:
        run = mutmut(work, "run", "--max-children", children, *only, timeout=cap)
        finished, output = True, run.stdout + run.stderr
    except subprocess.TimeoutExpired as e:
        finished = False
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
    seconds = time.monotonic() - started
    mutmut(work, "export-cicd-stats")
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    if only:
        stats = counted(statuses(work, only))
    return {
        "module": module,
        "functions": FUNCTIONS.get(name),
        "tests": tests,
        "finished": finished,
        "seconds": round(seconds),
        "stats": stats,
        "not_killed": survivors(work, only),
        "log_tail": output[-2000:],
    }


def changed_lines(diff: str) -> str:
    """The mutant's change in one line: ``- old`` → ``+ new``."""
    lines = [
        line.strip() for line in diff.splitlines()
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]  # fmt: skip
    return " → ".join(f"`{line}`" for line in lines)


def report(results: dict, reasons: dict[str, str]) -> str:
    """The markdown table of ``results`` and every survivor with its explanation
    (``reasons``: mutant name → why it is equivalent or what kills it)."""
    rows = ["| module | tests | killed | survived | reached by no test | equivalent "
            "| score (non-equivalent) | time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    survivors_md = []
    for r in results.values():
        st = r["stats"]
        equivalent = [
            m for m in r["not_killed"] if reasons.get(m["mutant"], "").startswith("equivalent")
        ]
        # a mutant under which the test process dies (mutmut: "segfault") is detected too
        killed, total = st.get("killed", 0) + st.get("segfault", 0), st.get("total", 0)
        score = killed / max(total - len(equivalent), 1)
        done = "" if r["finished"] else " (stopped by its time cap)"
        rows.append(
            f"| `{r['module']}` | `{' '.join(r['tests'])}` | {killed} | "
            f"{st.get('survived', 0) + st.get('timeout', 0)} | {st.get('no_tests', 0)} | "
            f"{len(equivalent)} | "
            f"{score:.1%} | {r['seconds']} s{done} |"
        )
        survivors_md.append(f"\n### `{r['module']}`\n")
        untested: dict[str, int] = {}
        for m in r["not_killed"]:
            short = m["mutant"].split(".")[-1].replace("\u01c1", ".")
            if m["status"] == "segfault":
                continue  # counted as killed
            if m["status"] == "no tests":
                function = short.split("__mutmut_")[0]
                untested[function] = untested.get(function, 0) + 1
                continue
            why = reasons.get(m["mutant"], "not killed: a gap in the tests")
            survivors_md.append(f"- `{short}` ({m['status']}): {changed_lines(m['diff'])} — {why}")
        if untested:
            listed = ", ".join(f"`{f}` ({n})" for f, n in sorted(untested.items()))
            survivors_md.append(
                f"- reached by none of the selected tests (mutants per function): {listed}"
            )
    return "\n".join(rows) + "\n" + "\n".join(survivors_md) + "\n"


def main(names: list[str]) -> None:
    for name in names or list(MODULES):
        print(f"mutation: {name} ...", flush=True)
        result = run_module(name)
        print(
            f"mutation: {name}: {json.dumps(result['stats'])} in {result['seconds']} s", flush=True
        )
        # read just before writing: the other modules' results (another run may have
        # written some meanwhile) are kept
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results[name] = result
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
