"""Issue 17 on a lent GPU, in one command: a wide teacher, then a width-16 student
distilled from it, both selected by the thinned Rand error, both scored on the hold-out.

    PYTHONPATH=. python benchmarks/gpu_distill.py --data DIR [--minutes 3.5]
    python benchmarks/gpu_distill.py --data examples/isbi2012/train --val-slices 3 \\
        --dry-run-on-cpu          # the same steps at toy sizes, to try the script

``DIR`` is the ISBI 2012 training folder (images/ + masks/, e.g. from
``unet-hub fetch-data isbi2012 data/isbi2012``); slices 25-29 are held out. Steps:

1. teacher: ``train.py`` at width 64, the paper recipe with bf16 autocast, batch 16,
   weights averaged (``--ema 0.99``), the saved epoch chosen by the thinned Rand error;
2. student: the same recipe at width 16 (the bundled model's width, so its CPU latency
   stays the bundled model's) with ``--teacher`` (half the loss matches the teacher),
   ``--select-threshold`` and float16 weights: a candidate for the bundled model;
3. both scored by ``unet_hub.evaluate`` on the held-out slices at their own threshold,
   with connected components and with the watershed, as ``unet-hub evaluate`` prints.

Writes to ``$OUT`` (else ``runs/gpu_distill/out``): the student's folder as it would be
bundled (config, weights, card, curve, log), the teacher's card, and ``distill.json``
with every figure and the exact commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet_hub import UNet  # noqa: E402
from unet_hub.cli import recorded_command  # noqa: E402
from unet_hub.data.pairs import find_pairs, select_stems  # noqa: E402
from unet_hub.evaluate.evaluator import evaluate_pairs  # noqa: E402
from unet_hub.files import CARD_NAME, CONFIG_NAME, CURVE_NAME, LOG_NAME, WEIGHTS_NAME  # noqa: E402
from unet_hub.infer.instances import InstanceOptions  # noqa: E402

PAPER = [
    "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1e-4",
    "--lr-schedule", "cosine", "--loss", "bce+dice", "--augment", "paper",
    "--crop-size", "256", "--samples-per-epoch", "320", "--epochs", "100000",
    "--select-by", "rand-thinned", "--ema", "0.99", "--seed", "0",
    "--labels", "cell interior",
]  # fmt: skip
GPU = ["--device", "cuda", "--mixed-precision", "bf16", "--batch-size", "16", "--num-workers", "8"]
TOY = ["--device", "cpu", "--batch-size", "2", "--image-size", "128", "--crop-size", "64"]
NOTE = (
    "The labels follow the ISBI 2012 masks: mask 255 = cell interior (the model's "
    "foreground), 0 = membrane (background)."
)


def train(folder: str, width: int, minutes: float, data: Path, args, extra: list[str]) -> dict:
    """Run ``train.py`` for one model in ``args.work``; its command line and minutes."""
    hardware = TOY if args.dry_run_on_cpu else GPU
    command = [
        sys.executable, str(ROOT / "train.py"), "--data", str(data),
        "--val-slices", args.val_slices, "--out", folder, "--base-channels", str(width),
        "--max-minutes", f"{minutes:g}", *PAPER, *hardware, "--card-note", NOTE, *extra,
    ]  # fmt: skip
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run(command, cwd=args.work, env=env, check=True)
    minutes = round((time.perf_counter() - started) / 60, 2)
    return {"command": recorded_command(command[1:]), "minutes": minutes}


def score(folder: Path, pairs: list, device: str) -> dict:
    """The hold-out figures at the model's threshold, objects by components and watershed."""
    model = UNet.from_pretrained(folder, map_location=device)
    figures = {}
    for watershed in (False, True):
        objects = InstanceOptions(watershed=watershed, min_size=0)
        evaluation = evaluate_pairs(model, pairs, instances=objects)
        figures.update({name: value for name, value, _ in evaluation.rows()})
        print(evaluation.table(), flush=True)
    return {"threshold": model.config.threshold, "figures": figures}


def bring_back(work: Path, out: Path) -> None:
    """The student's folder and the teacher's card, as files under ``out``."""
    student = out / "student"
    student.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, CURVE_NAME, LOG_NAME):
        if (work / "student" / name).exists():
            shutil.copy2(work / "student" / name, student / name)
    if (work / "teacher" / CARD_NAME).exists():
        shutil.copy2(work / "teacher" / CARD_NAME, out / "teacher_card.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ISBI 2012 train folder")
    parser.add_argument("--val-slices", default="25-29")
    parser.add_argument("--minutes", type=float, default=3.5, help="each model's budget")
    parser.add_argument("--student-width", type=int, default=16)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu_distill")
    parser.add_argument("--dry-run-on-cpu", action="store_true")
    args = parser.parse_args()
    if not (args.data / "images").is_dir():
        print(f"error: {args.data} has no images/ folder: give the ISBI 2012 train folder")
        return 2
    data = args.data.resolve()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    minutes = 0.3 if args.dry_run_on_cpu else args.minutes
    teacher_width = 8 if args.dry_run_on_cpu else 64
    result = {"teacher": train("teacher", teacher_width, minutes, data, args, [])}
    student_options = ["--teacher", "teacher", "--select-threshold", "--fp16-weights"]
    result["student"] = train("student", args.student_width, minutes, data, args, student_options)
    pairs, _ = select_stems(find_pairs(data), args.val_slices)
    device = "cpu" if args.dry_run_on_cpu else "cuda"
    for name in ("teacher", "student"):
        result[name] |= score(args.work / name, pairs, device)
    out = Path(os.environ.get("OUT") or args.work / "out")
    bring_back(args.work, out)
    (out / "distill.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
