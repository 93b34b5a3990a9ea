"""Mixed data: the defaults, the paper recipe and ``--recipe auto`` on data sets made
the ways users' data comes, each scored on a held-out block by mean Dice.

    python benchmarks/mixed_data.py                      # the synthetic nuclei set
    python benchmarks/mixed_data.py --set isbi --data data/isbi2012/train

Two sets:

- ``nuclei`` (default): 100 synthetic fluorescence, bright-field and H&E-like images of
  256 to 1100 px, 8- and 16-bit, nuclei 6-28 % of the pixels
  (``benchmarks/synthetic_nuclei.py``); 000-079 train, 080-099 are held out;
- ``isbi``: the 30 labelled ISBI 2012 slices (``--data``, as fetched by
  ``unet-hub fetch-data``), each written as one variant in turn: as it is, inverted,
  16-bit with a tenth of the range used, 8-bit with low contrast near white, an RGB tint,
  inverted 16-bit; 00-24 train, 25-29 are held out. ISBI's foreground (cell interior)
  is 78 % of each slice, so an all-foreground prediction already scores a Dice of 0.89:
  this set shows robustness to the variants, not segmentation quality.

Recipes, each trained through ``unet_hub.train.loop.train`` (what ``train.py`` runs):

- auto: ``--recipe auto`` alone; it chooses its width and budget (at most 8 minutes);
- defaults: the seed recipe (``train.py``'s defaults) at width 16, for auto's budget
  (the seed recipe's 40 epochs at width 64 take hours on a CPU);
- paper: the README's paper recipe (AdamW 1e-3 cosine, BCE+Dice, paper augmentation,
  256-px crops, batch 4) at width 16, same budget.

Baselines without training, on the same held-out images: predicting foreground
everywhere, and Otsu's threshold per image (on the luminance, lightly smoothed) with
whichever polarity fits that image's mask better, an oracle no real method has.
Scored with ``unet_hub.evaluate.evaluator`` (the code behind ``unet-hub evaluate``).
Writes ``benchmarks/results/mixed_<set>.json`` and ``.md``, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.filters import threshold_otsu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_path import results_path  # noqa: E402
from synthetic_nuclei import make_nuclei_set  # noqa: E402

from unet_hub import UNet  # noqa: E402
from unet_hub.cli import train_config  # noqa: E402
from unet_hub.data.images import read_image  # noqa: E402
from unet_hub.data.pairs import find_pairs, select_stems  # noqa: E402
from unet_hub.errors import DataError  # noqa: E402
from unet_hub.evaluate.evaluator import evaluate_pairs  # noqa: E402
from unet_hub.train.loop import train  # noqa: E402
from unet_hub.train.recipe import auto_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ISBI_VARIANTS = ("plain", "inverted", "dim16", "bright_low_contrast", "rgb_tint", "inverted16")
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


def make_mixed_isbi(source: Path, target: Path) -> Path:
    """Write every slice of ``source`` as its variant into ``target`` (images + masks)."""
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for i, (image_path, mask_path) in enumerate(find_pairs(source)):
        image = as_variant(read_image(image_path), ISBI_VARIANTS[i % len(ISBI_VARIANTS)])
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(target / "images" / f"{image_path.stem}.png"), image)
        cv2.imwrite(str(target / "masks" / f"{image_path.stem}.png"), read_image(mask_path))
    return target


@dataclass(frozen=True)
class DataSet:
    """A benchmark set: how to make it, its held-out block and its label."""

    title: str
    make: Callable[[Path, Path | None], Path]
    val_slices: str
    label: str


SETS = {
    "nuclei": DataSet(
        "100 synthetic fluorescence, bright-field and H&E-like nuclei images "
        "(256-1100 px, 8- and 16-bit), 000-079 -> 080-099",
        lambda target, _source: make_nuclei_set(target, count=100, seed=0),
        "80-99",
        "nucleus",
    ),
    "isbi": DataSet(
        "ISBI 2012 slices in six variants (inverted, 16-bit, low contrast, RGB tint...), "
        "slices 00-24 -> 25-29",
        lambda target, source: make_mixed_isbi(source, target),
        "25-29",
        "cell interior",
    ),
}


def held_out(data: Path, spec: str) -> list:
    return select_stems(find_pairs(data), spec)[0]


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * (pred & true).sum() / total)


def _luminance(path: Path) -> np.ndarray:
    image = read_image(path).astype(np.float64)
    return image.mean(axis=2) if image.ndim == 3 else image


def baselines(pairs: list) -> dict[str, float]:
    """Mean Dice of all-foreground and of per-image Otsu with the better polarity."""
    everywhere, otsu = [], []
    for image_path, mask_path in pairs:
        true = read_image(mask_path) > 127
        gray = cv2.GaussianBlur(_luminance(image_path), (0, 0), 1)
        above = gray > threshold_otsu(gray)
        everywhere.append(_dice(np.ones_like(true), true))
        otsu.append(max(_dice(above, true), _dice(~above, true)))
    return {
        "all_foreground": float(np.mean(everywhere)),
        "otsu_best_polarity": float(np.mean(otsu)),
    }


def run(name: str, options: list[str], pairs: list, shown: list[str]) -> dict:
    """Train one recipe, then score its best model on the held-out ``pairs``."""
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
    evaluation = evaluate_pairs(UNet.from_pretrained(Path(given.output.out)), pairs)
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
    base = result["baselines"]
    lines = [
        f"# Mixed data: {result['data']}",
        "",
        f"Baselines on the held-out images, no training: all-foreground Dice "
        f"{base['all_foreground']:.4f}; Otsu per image with the better polarity (an oracle) "
        f"{base['otsu_best_polarity']:.4f}. {result['machine']['cpus']} CPUs, "
        f"{result['machine']['torch_threads']} torch thread(s); the load averages say how "
        "much other work shared them.",
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


def parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="nuclei", help="which data set")
    parser.add_argument("--data", type=Path, default=None, help="ISBI 2012 train folder (isbi)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "mixed_data")
    parser.add_argument(
        "--minutes", type=float, default=None, help="budget of defaults and paper (default: auto's)"
    )
    parser.add_argument("--only", nargs="+", default=["auto", "defaults", "paper"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's); on a machine others share, 1 avoids threads "
        "waiting on each other's descheduled peers",
    )
    return parser, parser.parse_args()


def main() -> int:
    parser, args = parse_args()
    chosen = SETS[args.set]
    if args.set == "isbi" and (args.data is None or not (args.data / "images").is_dir()):
        print(
            f"error: --set isbi needs --data, the ISBI 2012 train folder with images/ and "
            f"masks/ (got {args.data}); fetch it with: unet-hub fetch-data isbi2012 data/isbi2012",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work / args.set
    try:
        data = chosen.make(work / "data", args.data)
        pairs = held_out(data, chosen.val_slices)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    common = ["--val-slices", chosen.val_slices, "--labels", chosen.label]
    auto_minutes, rows = None, []
    for name in ("auto", "defaults", "paper"):  # auto first: its budget is the others'
        if name not in args.only:
            continue
        extra = ["--recipe", "auto"]
        if name != "auto":
            minutes = args.minutes or auto_minutes or 6.0
            extra = ["--base-channels", "16", "--epochs", "100000", "--max-minutes", f"{minutes:g}"]
            extra += PAPER if name == "paper" else []
        options = ["--data", str(data), *common, "--out", str(work / name), *extra]
        row = run(name, options, pairs, ["--data", args.set, *common, *extra])
        if name == "auto":
            auto_minutes = round(row["minutes"], 1)
        rows.append(row)
        print(json.dumps(row, indent=2), flush=True)
    result = {
        "set": args.set,
        "data": chosen.title,
        "baselines": baselines(pairs),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    folder = results_path(parser, args, "results", frozenset({"set", "data"}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"mixed_{args.set}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (folder / f"mixed_{args.set}.md").write_text(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
