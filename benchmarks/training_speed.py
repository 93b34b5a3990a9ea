"""Training speed: the seed's loop against unet-hub's, on one and on two processes.

    python benchmarks/training_speed.py [--width 16] [--samples 12] [--size 512]

All rows train the same network (``--width``, bilinear) on the ISBI 2012 training slices
(``--data``; by default the README's ``data/isbi2012/train``, else the shipped examples: the
speed does not depend on which slices) at ``--size``², batch 1, the seed recipe
(RMSprop lr 1e-5, BCEWithLogitsLoss, random flips), no validation:

- seed loop: as the seed's script runs it — its Dataset reads and decodes each image and
  mask from disk with PIL on every step, batch 1, no workers, NCHW eager;
- unet-hub, 1 process: ``train.py`` (decoded images cached in memory, Accelerate);
- unet-hub, 2 processes: ``torchrun --nproc_per_node 2 train.py`` (DDP over gloo, one
  thread each: the same two cores, split between processes instead of threads).

Images/s of unet-hub are taken from its own training log (the second epoch, so start-up
and the first-step warm-up are not counted); the seed loop is timed the same way after
one warm-up step. Also reported: achieved GFLOP/s counting a training step as 3× the
forward FLOPs, against the 64->64 conv ceiling measured in the same run (as bench.py).
Writes benchmarks/results/training_speed.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support helpers (free_port)
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import ceiling, count_flops, machine  # noqa: E402
from results_path import results_path  # noqa: E402

from support import free_port  # noqa: E402
from unet_hub import UNet  # noqa: E402
from unet_hub.data.pairs import find_pairs  # noqa: E402
from unet_hub.errors import UNetHubError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT / "data" / "isbi2012" / "train"  # `unet-hub fetch-data isbi2012 data/isbi2012`
EXAMPLES = ROOT / "examples" / "isbi2012" / "train"


def shown_path(path: Path) -> str:
    """A data folder as the results show it: relative to the repository, else its name
    (never a path of the machine that ran it)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def seed_loop(data: Path, width: int, size: int, samples: int) -> float:
    """Images/s of the seed's loop: PIL decode per step, raw 0-255 input, batch 1."""
    pairs = sorted((data / "images").glob("*"))
    torch.manual_seed(0)
    model = UNet(base_channels=width)
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-5, weight_decay=1e-8, momentum=0.9)
    criterion = torch.nn.BCEWithLogitsLoss()

    def item(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.open(path).resize((size, size))
        mask = Image.open(data / "masks" / path.name).resize((size, size), Image.NEAREST)
        x, y = np.array(image, dtype=np.float32), np.array(mask, dtype=np.float32) / 255
        flip = random.choice([None, 0, 1, (0, 1)])
        if flip is not None:
            x, y = np.flip(x, flip).copy(), np.flip(y, flip).copy()
        return torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]

    def step(path: Path) -> None:
        x, y = item(path)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(pairs[0])  # warm-up
    started = time.perf_counter()
    for n in range(samples):
        step(pairs[n % len(pairs)])
    return samples / (time.perf_counter() - started)


def project_loop(data: Path, width: int, size: int, samples: int, processes: int) -> float:
    """Images/s of train.py's second epoch, on ``processes`` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        options = [
            "--data", str(data), "--out", str(out), "--val-fraction", "0",
            "--base-channels", str(width), "--image-size", str(size), "--epochs", "2",
            "--samples-per-epoch", str(samples), "--device", "cpu",
        ]  # fmt: skip
        if processes == 1:
            launcher = [sys.executable]
        else:
            launcher = [
                str(Path(sys.executable).parent / "torchrun"),
                "--nproc_per_node", str(processes), "--master_port", str(free_port()),
            ]  # fmt: skip
        subprocess.run(
            [*launcher, str(ROOT / "train.py"), *options],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // processes))},
        )
        with (out / "training_log.csv").open() as f:
            second = list(csv.DictReader(f))[1]
        return samples / float(second["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--samples", type=int, default=12, help="training images per timing")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="images/ + masks/ to train on (default: data/isbi2012/train, else examples/)",
    )
    args = parser.parse_args()
    args.out = results_path(parser, args, "out")
    data = args.data or (DATA if DATA.is_dir() else EXAMPLES)
    try:
        find_pairs(data)
    except UNetHubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    load_before = [round(x, 2) for x in os.getloadavg()]

    flops = 3 * count_flops(UNet(base_channels=args.width), torch.rand(1, 1, args.size, args.size))
    rows = {
        "seed loop (PIL per step, 1 process)": seed_loop(data, args.width, args.size, args.samples),
        "unet-hub, 1 process": project_loop(data, args.width, args.size, args.samples, 1),
        "unet-hub, 2 processes (DDP)": project_loop(data, args.width, args.size, args.samples, 2),
    }
    conv_ceiling = ceiling(repeats=3)["conv_ceiling_gflops"]  # in this run, as the rows
    seed = rows["seed loop (PIL per step, 1 process)"]
    table = [
        {
            "loop": name,
            "images_per_s": round(speed, 3),
            "vs_seed": round(speed / seed, 2),
            "gflops": round(speed * flops / 1e9, 1),
            "pct_of_conv_ceiling": round(100 * speed * flops / 1e9 / conv_ceiling, 1),
        }
        for name, speed in rows.items()
    ]
    report = {
        "width": args.width,
        "size": args.size,
        "samples": args.samples,
        "data": shown_path(data),
        "train_gflop_per_image": round(flops / 1e9, 1),
        "conv_ceiling_gflops": round(conv_ceiling, 1),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "table": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Training speed: width {args.width}, {args.size}², batch 1, seed recipe",
        "",
        f"`python benchmarks/training_speed.py` — {report['machine']['cpu']}, "
        f"{report['train_gflop_per_image']} GFLOP per training image (3× forward), load "
        f"average {load_before} before.",
        "",
        "| loop | images/s | vs seed loop | GFLOP/s | % of conv ceiling |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['loop']} | {r['images_per_s']} | {r['vs_seed']}× | {r['gflops']} | "
            f"{r['pct_of_conv_ceiling']} |"
            for r in table
        ),
    ]
    (args.out / "training_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
