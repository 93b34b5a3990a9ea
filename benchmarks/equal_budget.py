"""The seed recipe against the project's best recipe, for the same wall-clock budget.

    python benchmarks/equal_budget.py [--minutes 15] [--width 16] [--tta]

Both train on ISBI 2012 slices 00-24 (validated every epoch on 25-29, which picks the
best epoch), for ``--minutes`` of training and validation each, at the same width, one
after the other in this process. Both best models are then scored on slices 25-29 with
``unet_hub.evaluate.evaluator`` (the code behind ``unet-hub evaluate``). Writes
``benchmarks/results/equal_budget.json`` and ``.md``; models go to ``runs/equal_budget/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_path import results_path  # noqa: E402

from unet_hub import UNet  # noqa: E402
from unet_hub.cli import recorded_command, train_config  # noqa: E402
from unet_hub.data.pairs import find_pairs, select_stems  # noqa: E402
from unet_hub.errors import UNetHubError  # noqa: E402
from unet_hub.evaluate.evaluator import evaluate_pairs  # noqa: E402
from unet_hub.train.loop import train  # noqa: E402

DATA = ROOT / "data" / "isbi2012" / "train"  # laid out as the README says
RESULTS = ROOT / "benchmarks" / "results"
#: The recipes, as train.py options on top of the shared ones. "seed" is the defaults.
RECIPES: dict[str, list[str]] = {
    "seed": [],
    "best": [
        "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1e-4",
        "--lr-schedule", "cosine", "--loss", "bce+dice", "--augment", "paper",
        "--crop-size", "256", "--batch-size", "4", "--samples-per-epoch", "100",
    ],
}  # fmt: skip
#: (column, JSON key, format) of the table.
COLUMNS = (
    ("pixel error", "pixel_error", "{:.4f}"),
    ("challenge pixel error", "challenge_pixel_error", "{:.4f}"),
    ("Rand error @0.5", "rand_error", "{:.4f}"),
    ("Rand error @best", "best_rand_error", "{:.4f}"),
    ("best threshold", "best_rand_threshold", "{:.2f}"),
    ("Rand error @best, thinned borders", "rand_error_thinned_at_best", "{:.4f}"),
    ("Dice", "dice", "{:.4f}"),
)


def train_options(name: str, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        "--data", str(args.data), "--out", str(out), "--val-slices", args.val_slices,
        "--base-channels", str(args.width), "--epochs", "100000",
        "--max-minutes", f"{args.minutes:g}", "--labels", "cell interior",
        "--seed", str(args.seed), *RECIPES[name],
    ]  # fmt: skip


def run_recipe(name: str, args: argparse.Namespace) -> dict:
    """Train one recipe for the budget, then score its best model on the hold-out."""
    out = args.work / name
    options = train_options(name, out, args)
    cfg = train_config(options)
    command = recorded_command(["train.py", *options])
    print(f"\n== {name}: {command}", flush=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = train(cfg, command=command)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    pairs, _ = select_stems(find_pairs(args.data), args.val_slices)
    evaluation = evaluate_pairs(UNet.from_pretrained(out), pairs, tta=args.tta)
    print(evaluation.table(), flush=True)
    row = {
        "recipe": name,
        "recipe_line": cfg.recipe(),
        "command": command,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_seconds": round(seconds, 1),
        **{key: getattr(evaluation, key) for _, key, _ in COLUMNS if key != "dice"},
        "dice": evaluation.mean_dice,
        "vi": evaluation.vi,
        # the machine's 1-minute load average before and after: both recipes should see
        # the same (about 2 = the two cores busy with this run alone)
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }
    return row


def markdown(result: dict) -> str:
    head = ["recipe", "epochs (best)", *[c for c, _, _ in COLUMNS]]
    lines = [
        f"# Equal budget: {result['minutes']:g} min each, width {result['width']}, "
        f"ISBI 2012 slices 00-24 -> 25-29{' (flip TTA)' if result['tta'] else ''}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in result["rows"]:
        cells = [row["recipe"], f"{row['epochs']} ({row['best_epoch']})"]
        cells += [fmt.format(row[key]) for _, key, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Recipes:", ""]
    lines += [
        f"- {row['recipe']}: {row['recipe_line']}; `{row['command']}`" for row in result["rows"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="budget per recipe")
    parser.add_argument("--width", type=int, default=16, help="base channels of both")
    parser.add_argument("--tta", action="store_true", help="evaluate with flip TTA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="images/ + masks/ of ISBI 2012")
    parser.add_argument(
        "--val-slices", default="25-29", help="the held-out slices, by stem (e.g. 2-3 on examples/)"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "equal_budget")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the table goes")
    args = parser.parse_args()
    args.results = results_path(parser, args, "results")

    rows = [run_recipe(name, args) for name in RECIPES]
    result = {
        "minutes": args.minutes,
        "width": args.width,
        "tta": args.tta,
        "train": "slices 00-24",
        "evaluated_on": f"slices {args.val_slices}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "equal_budget.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.results / "equal_budget.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    try:
        main()
    except UNetHubError as e:
        sys.exit(f"error: {e}")
