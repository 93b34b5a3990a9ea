"""Mixed data: the defaults, the paper recipe and ``--recipe auto`` on one set of ISBI
2012 slices written the ways users' data comes.

    python benchmarks/mixed_data.py [--data DIR] [--minutes M] [--only auto]

Each of the 30 labelled slices is written as one variant, in turn: as it is, inverted,
16-bit with a tenth of the range used, 8-bit with low contrast near white, an RGB tint,
and inverted 16-bit. Slices 00-24 train, 25-29 (one of each of five variants) are held
out: validated on every epoch and scored at the end by mean Dice with
``unet_hub.evaluate.evaluator`` (the code behind ``unet-hub evaluate``).

- defaults: the seed recipe (``train.py``'s defaults) at width 16, for the auto recipe's
  budget (the seed recipe's 40 epochs at width 64 take hours on a CPU);
- paper: the README's paper recipe (AdamW 1e-3 cosine, BCE+Dice, paper augmentation,
  256-px crops, batch 4) at width 16, same budget;
- auto: ``--recipe auto`` alone; it chooses its width and budget.

An all-foreground prediction scores the Dice in ``trivial_dice`` (ISBI's foreground,
cell interior, is most of each slice): a recipe is only as good as its margin over it.
Writes ``benchmarks/results/mixed_data.json`` and ``.md``, with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unet_hub import UNet  # noqa: E402
from unet_hub.cli import train_config  # noqa: E402
from unet_hub.data.images import read_image  # noqa: E402
from unet_hub.data.pairs import find_pairs, select_stems  # noqa: E402
from unet_hub.evaluate.evaluator import evaluate_pairs  # noqa: E402
from unet_hub.train.loop import train  # noqa: E402
from unet_hub.train.recipe import auto_config  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "isbi2012" / "train"
RESULTS = ROOT / "benchmarks" / "results"
VAL_SLICES = "25-29"
VARIANTS = ("plain", "inverted", "dim16", "bright_low_contrast", "rgb_tint", "inverted16")
PAPER = [
    "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1e-4",
    "--lr-schedule", "cosine", "--loss", "bce+dice", "--augment", "paper",
    "--crop-size", "256", "--batch-size", "4", "--samples-per-epoch", "100",
]  # fmt: skip


def as_variant(gray: np.ndarray, variant: str) -> np.ndarray:
    """An 8-bit gray slice as one kind of file holds it (RGB for the tint)."""
    g = gray.astype(np.float64)
    if variant == "plain":
        return gray
    if variant == "inverted":
        return (255 - g).astype(np.uint8)
    if variant == "dim16":
        return (g * 25 + 1000).astype(np.uint16)
    if variant == "bright_low_contrast":
        return (g * 0.35 + 160).astype(np.uint8)
    if variant == "rgb_tint":
        return np.stack([g, g * 0.5 + 40, g * 0.3], axis=2).astype(np.uint8)
    if variant == "inverted16":
        return (65535 - g * 200).astype(np.uint16)
    raise ValueError(variant)


def make_mixed(source: Path, target: Path) -> Path:
    """Write every slice of ``source`` as its variant into ``target`` (images + masks)."""
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for i, (image_path, mask_path) in enumerate(find_pairs(source)):
        image = as_variant(read_image(image_path), VARIANTS[i % len(VARIANTS)])
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(target / "images" / f"{image_path.stem}.png"), image)
        cv2.imwrite(str(target / "masks" / f"{image_path.stem}.png"), read_image(mask_path))
    return target


def trivial_dice(data: Path) -> float:
    """The held-out Dice of predicting foreground everywhere."""
    pairs, _ = select_stems(find_pairs(data), VAL_SLICES)
    fg = [(read_image(m) > 127).mean() for _, m in pairs]
    return float(np.mean([2 * f / (1 + f) for f in fg]))  # Dice pooled per image


def run(name: str, options: list[str], data: Path, shown: list[str]) -> dict:
    """Train one recipe, then score its best model on the held-out slices."""
    given = train_config(options)
    chosen = None
    if name == "auto":
        from unet_hub.cli import _given_train_options, build_parser

        args = build_parser().parse_args(["train", *options])
        given, choice, profile = auto_config(_given_train_options(args))
        chosen = choice.summary().splitlines()
        print(profile.describe(), *chosen, sep="\n", flush=True)
    command = shlex.join(["train.py", *shown])
    print(f"\n== {name}: {command}", flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = train(given, command=command)
    minutes = (time.perf_counter() - started) / 60
    load_after = os.getloadavg()
    pairs, _ = select_stems(find_pairs(data), VAL_SLICES)
    out = Path(given.output.out)
    evaluation = evaluate_pairs(UNet.from_pretrained(out), pairs)
    warnings = [h.warning for h in result.history if h.warning]
    return {
        "recipe": name,
        "recipe_line": given.recipe(),
        "command": command,
        "chosen": chosen,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "minutes": round(minutes, 2),
        "dice": evaluation.mean_dice,
        "per_image_pixel_error": evaluation.pixel_error,
        "warnings": len(warnings),
        "last_warning": warnings[-1] if warnings else None,
        # 1, 5 and 15-minute load averages before and after: 2 = both cores busy with
        # this run alone; more = other work shared the machine
        "load_average": [[round(v, 2) for v in load_before], [round(v, 2) for v in load_after]],
    }


def markdown(result: dict) -> str:
    lines = [
        "# Mixed data: ISBI 2012 slices in six variants (inverted, 16-bit, low contrast, "
        "RGB tint...), slices 00-24 -> 25-29",
        "",
        f"All-foreground Dice on the held-out slices: {result['trivial_dice']:.4f}. "
        f"{result['machine']['cpus']} CPUs, {result['machine']['torch_threads']} torch "
        "thread(s), shared with other work (see the load averages).",
        "",
        "| recipe | minutes | epochs (best) | held-out Dice | warnings | load average "
        "(1 min, before -> after) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        load = f"{r['load_average'][0][0]} -> {r['load_average'][1][0]}"
        lines.append(
            f"| {r['recipe']} | {r['minutes']:.1f} | {r['epochs']} ({r['best_epoch']}) | "
            f"{r['dice']:.4f} | {r['warnings']} | {load} |"
        )
    lines += ["", "Recipes:", ""]
    for r in result["rows"]:
        lines.append(f"- {r['recipe']}: {r['recipe_line']}; `{r['command']}`")
        lines += [f"  - {c}" for c in r["chosen"] or []]
        if r["last_warning"]:
            lines.append(f"  - last warning: {r['last_warning']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="ISBI 2012 train folder")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "mixed_data")
    parser.add_argument(
        "--minutes", type=float, default=None, help="budget of defaults and paper (default: auto's)"
    )
    parser.add_argument("--only", nargs="+", default=["defaults", "paper", "auto"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's); on a machine others share, 1 avoids threads "
        "waiting on each other's descheduled peers",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = make_mixed(args.data, args.work / "data")
    common = ["--data", str(data), "--val-slices", VAL_SLICES, "--labels", "cell interior"]
    shown_common = ["--data", "mixed", "--val-slices", VAL_SLICES, "--labels", "cell interior"]
    auto_minutes = None
    rows = []
    for name in ("auto", "defaults", "paper"):  # auto first: its budget is the others'
        if name not in args.only:
            continue
        extra = ["--recipe", "auto"]
        if name != "auto":
            minutes = args.minutes or auto_minutes or 6.0
            extra = ["--base-channels", "16", "--epochs", "100000", "--max-minutes", f"{minutes:g}"]
            extra += PAPER if name == "paper" else []
        out = ["--out", str(args.work / name)]
        row = run(name, [*common, *out, *extra], data, [*shown_common, *extra])
        if name == "auto":
            auto_minutes = round(row["minutes"], 1)
        rows.append(row)
        print(json.dumps(row, indent=2), flush=True)
    result = {
        "data": "ISBI 2012 slices 00-29, each written as one of " + ", ".join(VARIANTS),
        "trivial_dice": trivial_dice(data),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "mixed_data.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.results / "mixed_data.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
