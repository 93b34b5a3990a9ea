"""Microseconds per 512² sample of each augmentation, on a real ISBI slice and its mask.

    python benchmarks/augment_speed.py [--repeats 200] [--out PATH]

Each configuration switches on one transform with probability 1 (or the whole recipe at
its defaults), and is timed over ``--repeats`` calls after one warm-up call, in this
process with torch's and OpenCV's default threads. Also times the border weight map,
which is computed once per mask (not per sample). Writes
``benchmarks/results/augment_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_path import results_path  # noqa: E402

from unet_hub.data.augment import AugmentParams, PaperAugment, RandomFlip  # noqa: E402
from unet_hub.data.images import read_image  # noqa: E402
from unet_hub.train.losses import unet_weight_map  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "augment_speed.json"
SAMPLE = ROOT / "examples" / "isbi2012" / "train"
#: Every transform off; each configuration below switches on what it measures.
NOTHING = AugmentParams(flip=False, rot90=False, rotation_p=0, shift_p=0, elastic_p=0, gray_p=0)


def configurations() -> dict[str, object]:
    return {
        "seed recipe: RandomFlip": RandomFlip(),
        "flips (remap)": PaperAugment(replace(NOTHING, flip=True)),
        "90° rotations (remap)": PaperAugment(replace(NOTHING, rot90=True)),
        "free rotation": PaperAugment(replace(NOTHING, rotation_p=1)),
        "shift": PaperAugment(replace(NOTHING, shift_p=1)),
        "elastic deformation": PaperAugment(replace(NOTHING, elastic_p=1)),
        "gray values": PaperAugment(replace(NOTHING, gray_p=1)),
        "paper recipe, defaults": PaperAugment(AugmentParams()),
        "paper recipe, every transform": PaperAugment(
            AugmentParams(rotation_p=1, shift_p=1, elastic_p=1, gray_p=1)
        ),
        "paper recipe, every transform, 256² crop": PaperAugment(
            AugmentParams(rotation_p=1, shift_p=1, elastic_p=1, gray_p=1, crop_size=256)
        ),
    }


def time_call(fn, arrays: tuple[np.ndarray, ...], repeats: int) -> float:
    """Mean microseconds per call."""
    fn(*arrays)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*arrays)
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.out = results_path(parser, args, "out")

    image = read_image(SAMPLE / "images" / "00.png")
    mask = read_image(SAMPLE / "masks" / "00.png")
    assert image.shape == (512, 512), image.shape
    torch.manual_seed(0)
    weights_start = time.perf_counter()
    weights = unet_weight_map((mask > 0).astype(np.uint8))
    weight_map_ms = (time.perf_counter() - weights_start) * 1e3

    rows = []
    for name, augment in configurations().items():
        rows.append(
            {
                "augmentation": name,
                "us_image_mask": round(time_call(augment, (image, mask), args.repeats)),
                "us_image_mask_weights": round(
                    time_call(augment, (image, mask, weights), args.repeats)
                ),
            }
        )
    result = {
        "sample": "512×512 uint8 ISBI slice + mask (examples/isbi2012/train/00.png)",
        "repeats": args.repeats,
        "weight_map_ms_per_mask": round(weight_map_ms, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": round(os.getloadavg()[0], 2),  # other work slows timings
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    width = max(len(r["augmentation"]) for r in rows)
    print(f"{'augmentation':<{width}}  µs (image+mask)  µs (+weight map)")
    for r in rows:
        plain, weighted = r["us_image_mask"], r["us_image_mask_weights"]
        print(f"{r['augmentation']:<{width}}  {plain:>15,}  {weighted:>16,}")
    print(f"border weight map: {weight_map_ms:.1f} ms per mask (once, when the data set loads)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
