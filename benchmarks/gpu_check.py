"""The device check: every GPU path of unet-hub on one CUDA device, in one command.

    PYTHONPATH=. python benchmarks/gpu_check.py [--repeats 5] [--skip-tests]

Runs, on ``cuda``:

1. the CUDA-relevant test files (the CUDA tests skip on CPU-only machines);
2. the bundled model loaded on CUDA and segmenting an image: no warning, the fused
   backend chosen, and its agreement with eager in TF32 and in IEEE float32;
3. a short fp16 and a short bf16 training, and a one-process ``torchrun`` training (its
   NCCL process group must be ended: no "destroy_process_group" warning);
4. ``unet-hub evaluate --device cuda`` on the shipped examples: no warning;
5. inference timings (512² and 4096², the bundled width-16 model and a width-64 one;
   eager and fused, each in the default math mode (TF32) and in IEEE float32, and fused
   in fp16 and bf16).

Prints one line per check and a summary; writes ``gpu.json`` to ``$OUT`` when that
variable is set, else to ``benchmarks/results/``. Exits 1 when a check fails. On a
machine without CUDA it says "no CUDA device" and exits 0. Imports only torch, numpy and
unet_hub itself (pytest for the tests; missing optional packages skip what needs them).
``--dry-run-on-cpu`` runs the same steps on the CPU at toy sizes, to try the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

EXAMPLES = ROOT / "examples" / "isbi2012"
BUNDLED = ROOT / "unet_hub" / "pretrained" / "isbi2012"
TEST_FILES = [
    "test_backends.py", "test_model.py", "test_losses.py", "test_metrics.py",
    "test_inference.py", "test_augment.py", "test_evaluate.py",
]  # fmt: skip
SIZES = (512, 4096)
WIDTHS = (16, 64)  # the bundled model, and the seed's width
#: What the whole check may take on one H200 (the device tool's sessions allow ~10 min).
BUDGET_S = 8 * 60
#: A process group left undestroyed makes torch print this at exit.
UNDESTROYED = "destroy_process_group"
#: Where everything runs: "cuda"; ``--dry-run-on-cpu`` sets "cpu" to try the script itself.
DEVICE = "cuda"


class Report:
    """The checks' outcomes and measurements, printed as they come and saved as JSON."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.checks: list[dict] = []
        self.data: dict = {}

    def check(self, name: str, ok: bool | None, detail: str = "") -> None:
        """Record one check: ok True (pass), False (fail) or None (skipped)."""
        status = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
        self.checks.append({"name": name, "status": status, "detail": detail})
        print(f"[{self.elapsed():5.0f} s] {status} {name}{': ' + detail if detail else ''}")
        sys.stdout.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if c["status"] == "FAIL"]


def environment() -> dict[str, str]:
    """The child processes' environment: the project importable from source."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run(command: list[str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``command``; a timeout is a failed run (return code 124), not an exception."""
    try:
        return subprocess.run(
            command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        return subprocess.CompletedProcess(
            command, 124, out, err + f"\ntimed out after {timeout} s"
        )


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def warning_lines(text: str) -> list[str]:
    """Lines of a child's output that are warnings (Python's, torch's or NCCL's)."""
    return [
        line
        for line in text.splitlines()
        if re.search(r"warning|destroy_process_group", line, re.IGNORECASE)
    ]


# -- 1. the tests -------------------------------------------------------------------------


def run_tests(report: Report, logs: Path) -> None:
    try:
        import pytest  # noqa: F401
    except ImportError:
        report.check("CUDA-relevant tests", None, "pytest is not installed")
        return
    files = [f"tests/{name}" for name in TEST_FILES if (ROOT / "tests" / name).exists()]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *files]
    result = run(command, timeout=240)
    (logs / "tests.log").write_text(result.stdout + result.stderr)
    summary = tail(result.stdout, 1)
    report.data["tests"] = {"files": files, "summary": summary, "returncode": result.returncode}
    report.check("CUDA-relevant tests", result.returncode == 0, summary)
    if result.returncode != 0:
        print(tail(result.stdout, 40))


# -- 3 and 4. training and evaluation ---------------------------------------------------


def make_data(root: Path) -> Path:
    """The shipped training pairs, copied: a data folder for the short runs."""
    data = root / "data"
    shutil.copytree(EXAMPLES / "train", data)
    return data


TRAIN = ["--epochs", "2", "--image-size", "256", "--base-channels", "8", "--batch-size", "2",
         "--val-fraction", "0.25"]  # fmt: skip


def train_run(report: Report, name: str, launcher: list[str], data: Path, out: Path, *extra: str):
    command = [*launcher, str(ROOT / "train.py"), "--data", str(data), "--out", str(out)]
    result = run([*command, *TRAIN, "--device", DEVICE, *extra], timeout=180)
    (out.parent / f"{out.name}.log").write_text(result.stdout + result.stderr)
    warned = warning_lines(result.stderr)
    trained = result.returncode == 0 and (out / "training_log.csv").exists()
    detail = f"rc {result.returncode}" + (f"; warnings: {warned[:3]}" if warned else "")
    if not trained:
        detail += "\n" + tail(result.stderr)
    report.data.setdefault("training", {})[name] = {"returncode": result.returncode}
    report.check(name, trained and not any(UNDESTROYED in w for w in warned), detail)


def train_and_evaluate(report: Report, work: Path) -> None:
    data = make_data(work)
    python = [sys.executable]
    train_run(report, "train fp16", python, data, work / "fp16", "--mixed-precision", "fp16")
    train_run(report, "train bf16", python, data, work / "bf16", "--mixed-precision", "bf16")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                "--master_port", "29517"]  # fmt: skip
    train_run(report, "torchrun 1 process (NCCL)", torchrun, data, work / "ddp1")
    metrics_file = work / "eval.json"
    command = [sys.executable, "-m", "unet_hub.cli", "evaluate", str(BUNDLED), "--data",
               str(data), "--device", DEVICE, "--out", str(metrics_file)]  # fmt: skip
    result = run(command, timeout=120)
    warned = warning_lines(result.stderr)
    ok = result.returncode == 0 and metrics_file.exists() and not warned
    detail = f"rc {result.returncode}" + (f"; warnings: {warned[:3]}" if warned else "")
    if ok:
        metrics = json.loads(metrics_file.read_text())
        report.data["evaluate"] = {k: v for k, v in metrics.items() if isinstance(v, float)}
        detail += f"; mean Dice {np.mean(metrics.get('dice') or [np.nan]):.4f}"
    else:
        detail += "\n" + tail(result.stderr)
    report.check(f"unet-hub evaluate --device {DEVICE}", ok, detail)


# -- 2. loading on CUDA: no warning, the fused path ----------------------------------------


def load_and_segment(report: Report) -> None:
    from unet_hub import UNet, read_image, segment
    from unet_hub.infer import backends, runners

    image = read_image(EXAMPLES / "test" / "00.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = UNet.from_pretrained(BUNDLED).to(DEVICE)
        fast = segment(model, image)
        backend = backends.prepare(model).backend
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    expected = backends.auto_candidates(model)[0]  # fused on CUDA
    report.check(
        f"bundled model on {DEVICE}: no warning, {expected} backend",
        not messages and backend == expected,
        f"backend {backend}" + (f"; warnings: {messages}" if messages else ""),
    )
    differences = {"tf32_in_use": runners.tf32_in_use(torch.device(DEVICE))}
    eager = segment(model, image, backend="eager")
    differences["fast_vs_eager_default_mode"] = float(np.abs(fast - eager).max())
    with runners.ieee_float32():
        exact = segment(model, image, backend=backend) - segment(model, image, backend="eager")
    differences["fast_vs_eager_ieee"] = float(np.abs(exact).max())
    report.data["agreement"] = differences
    default_tolerance = runners.probability_tolerance(torch.float32, torch.device(DEVICE))
    report.check(
        f"{backend} = eager on {DEVICE} (512² slice)",
        differences["fast_vs_eager_default_mode"] <= default_tolerance
        and differences["fast_vs_eager_ieee"] <= runners.FP32_TOLERANCE,
        f"{differences['fast_vs_eager_default_mode']:.2e} in the default mode (tolerance "
        f"{default_tolerance:.1e}), {differences['fast_vs_eager_ieee']:.2e} in IEEE float32 "
        f"(tolerance {runners.FP32_TOLERANCE:.0e})",
    )


# -- 5. timings -------------------------------------------------------------------------------


def synchronised(fn: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return timed


def interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant, timed in interleaved rounds after one
    warm-up call each (cuDNN picks its algorithms then)."""
    timers = {name: synchronised(fn) for name, fn in variants.items()}
    for timer in timers.values():
        timer()
    rounds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            rounds[name].append(timer())
    return {name: statistics.median(times) for name, times in rounds.items()}


def width_model(width: int):
    """The bundled model at width 16; a random He-initialised one at other widths (speed
    does not depend on the weights)."""
    from unet_hub import UNet

    if width == 16:
        return UNet.from_pretrained(BUNDLED).eval()
    torch.manual_seed(0)
    model = UNet(base_channels=width).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


def in_ieee_float32(fn: Callable[[], object]) -> Callable[[], object]:
    from unet_hub.infer.runners import ieee_float32

    def call() -> object:
        with ieee_float32():
            return fn()

    return call


def variants(width: int, image: np.ndarray) -> dict[str, Callable[[], object]]:
    """eager and fused, in the default math mode (TF32 convolutions on Ampere and later)
    and in IEEE float32, then fused fp16 and bf16."""
    from unet_hub import segment

    model = width_model(width).to(DEVICE)
    half = width_model(width).to(DEVICE, torch.float16)
    bf16 = width_model(width).to(DEVICE, torch.bfloat16)
    calls: dict[str, Callable[[], object]] = {}
    for backend in ("eager", "fused"):
        run_it = lambda b=backend: segment(model, image, backend=b)  # noqa: E731
        calls[f"{backend} fp32 default (TF32)"] = run_it
        calls[f"{backend} fp32 IEEE"] = in_ieee_float32(run_it)
    calls["fused fp16"] = lambda: segment(half, image, backend="fused")
    calls["fused bf16"] = lambda: segment(bf16, image, backend="fused")
    return calls


def timings(report: Report, repeats: int) -> None:
    rng = np.random.default_rng(0)
    results: dict[str, dict] = {}
    for size in SIZES:
        image = rng.integers(0, 256, (size, size), dtype=np.uint8)
        for width in WIDTHS:
            if report.elapsed() > BUDGET_S - 60:
                report.check(f"timing {size}² width {width}", None, "out of time budget")
                continue
            key = f"{size}x{size} width {width}"
            try:
                seconds = interleaved(variants(width, image), repeats if size <= SIZES[0] else 3)
            except Exception as e:  # e.g. a dtype a GPU lacks: report, go on
                report.check(f"timing {key}", False, f"{type(e).__name__}: {e}")
                continue
            base = seconds["eager fp32 IEEE"]
            results[key] = {
                name: {"ms": round(1000 * s, 2), "speed-up vs eager IEEE fp32": round(base / s, 2)}
                for name, s in seconds.items()
            }
            best = min(seconds, key=seconds.get)
            report.check(
                f"timing {key}",
                True,
                ", ".join(f"{n} {1000 * s:.1f} ms" for n, s in seconds.items())
                + f"; fastest: {best}",
            )
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    report.data["timings"] = {
        "what": "seconds per segment() call (defaults: 1024 px tiles, overlap 256, batch 1), "
        f"median of interleaved rounds ({repeats} at {SIZES[0]}², 3 at larger sizes), output "
        "on the CPU; "
        "width 16 is the bundled model; other widths are random He-initialised",
        "results": results,
    }


# -- the run ------------------------------------------------------------------------------------


def machine() -> dict:
    from unet_hub.infer.runners import tf32_in_use

    gpu = {}
    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
        }
    return {
        **gpu,
        "device": DEVICE,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "tf32_by_default": tf32_in_use(torch.device(DEVICE)),
    }


def results_folder() -> Path:
    out = os.environ.get("OUT")
    folder = Path(out) if out else ROOT / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds at 512²")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the test files")
    parser.add_argument("--skip-timings", action="store_true", help="do not time inference")
    parser.add_argument(
        "--dry-run-on-cpu",
        action="store_true",
        help="run the script's own steps on the CPU at toy sizes (to develop the script; "
        "measures nothing about GPUs; writes gpu_dry_run.json)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global DEVICE, SIZES, WIDTHS, TRAIN
    args = parse_args(argv)
    if args.dry_run_on_cpu:
        DEVICE, SIZES, WIDTHS = "cpu", (64, 128), (4, 8)
        TRAIN = [*TRAIN, "--image-size", "64", "--base-channels", "4", "--epochs", "1"]
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (run this on a machine with a GPU)")
        return 0
    report = Report()
    report.data["machine"] = machine()
    print("device:", json.dumps(report.data["machine"]))
    with tempfile.TemporaryDirectory(prefix="unet-hub-gpu-") as tmp:
        work = Path(tmp)
        steps = {
            "tests": None if args.skip_tests else lambda: run_tests(report, work),
            "load and segment": lambda: load_and_segment(report),
            "train and evaluate": lambda: train_and_evaluate(report, work),
            "timings": None if args.skip_timings else lambda: timings(report, args.repeats),
        }
        for name, step in steps.items():
            try:
                if step is not None:
                    step()
            except Exception as e:  # one broken step must not hide the others' results
                report.check(name, False, f"{type(e).__name__}: {e}")
        logs = results_folder() / "gpu_check_logs"
        skip = shutil.ignore_patterns("data", "*.safetensors", "*.png")
        shutil.copytree(work, logs, dirs_exist_ok=True, ignore=skip)
    report.data["checks"] = report.checks
    report.data["seconds"] = round(report.elapsed(), 1)
    path = results_folder() / ("gpu_dry_run.json" if args.dry_run_on_cpu else "gpu.json")
    path.write_text(json.dumps(report.data, indent=2) + "\n")
    passed = sum(c["status"] == "PASS" for c in report.checks)
    print(
        f"\nsummary: {passed} passed, {len(report.failed)} failed, "
        f"{sum(c['status'] == 'SKIP' for c in report.checks)} skipped in "
        f"{report.elapsed():.0f} s; results in {path.name}"
    )
    for name in report.failed:
        print("  FAILED:", name)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
