"""Peak memory and time of ``segment`` on large images, each measured in its own process.

    python benchmarks/tiling_memory.py [--sizes 512 2048 4096] [--width 16] ...

Every measurement runs in a fresh subprocess, because ``ru_maxrss`` is a high-water mark:
in one process the biggest image would hide the others. A baseline process only imports
``unet_hub`` and builds the model, so the table can show what inference itself adds.
Writes ``benchmarks/results/tiling_memory.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from results_path import results_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "tiling_memory.json"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def worker(size: int, args: argparse.Namespace) -> dict:
    """Build the model and, unless ``size`` is 0 (baseline), segment a size² uint8 image."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from unet_hub import UNet
    from unet_hub.infer.segment import segment
    from unet_hub.infer.tiling import plan_tiles

    torch.manual_seed(0)
    model = UNet(base_channels=args.width).eval()
    result = {"size": size, "baseline_rss_mb": round(peak_rss_mb(), 1)}
    if size == 0:
        return result
    tile = None if args.tile_size <= 0 else args.tile_size
    options = {"tile_size": tile, "overlap": args.overlap, "batch_size": args.batch_size}
    segment(model, np.zeros((64, 64), np.uint8), **options)  # one-time library set-up
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    start = time.perf_counter()
    probs = segment(model, image, **options)
    seconds = time.perf_counter() - start
    rows, cols = plan_tiles(size, size, tile, args.overlap)
    assert probs.shape == (size, size)
    return {
        **result,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "seconds": round(seconds, 2),
        "megapixels": size * size / 1e6,
        "seconds_per_megapixel": round(seconds / (size * size / 1e6), 3),
        "tiles": len(rows.starts) * len(cols.starts),
        "tile_shape": [rows.tile, cols.tile],
    }


def measure(size: int, args: argparse.Namespace) -> dict:
    """Run ``worker(size)`` in a fresh Python process and return its result."""
    command = [sys.executable, __file__, "--worker", str(size), *forwarded(args)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement of {size}² failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def forwarded(args: argparse.Namespace) -> list[str]:
    """The options a worker process needs to rebuild the same set-up."""
    return [
        f"--width={args.width}",
        f"--tile-size={args.tile_size}",
        f"--overlap={args.overlap}",
        f"--batch-size={args.batch_size}",
    ]


def table(baseline: dict, runs: list[dict]) -> str:
    """A plain-text table; time per megapixel is relative to the first (smallest) size."""
    reference = runs[0]["seconds_per_megapixel"]
    lines = [
        f"baseline (import + build model): {baseline['baseline_rss_mb']:.0f} MiB",
        f"{'image':>11} {'tiles':>6} {'peak RSS':>10} {'+ baseline':>11} {'seconds':>8} "
        f"{'s/MP':>7} {'s/MP ratio':>10}",
    ]
    for r in runs:
        lines.append(
            f"{r['size']:>5}x{r['size']:<5} {r['tiles']:>6} {r['peak_rss_mb']:>7.0f} MiB "
            f"{r['peak_rss_mb'] - baseline['baseline_rss_mb']:>7.0f} MiB {r['seconds']:>8.1f} "
            f"{r['seconds_per_megapixel']:>7.2f} {r['seconds_per_megapixel'] / reference:>10.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    sys.path.insert(0, str(ROOT))
    from unet_hub.infer.segment import DEFAULT_BATCH_SIZE
    from unet_hub.infer.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--width", type=int, default=16, help="model base_channels")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="0 = whole image")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.output = results_path(parser, args, "output")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args)))
        return 0
    import torch

    load_before = os.getloadavg()  # other work on the machine slows the runs down
    baseline = measure(0, args)
    runs = [measure(size, args) for size in sorted(args.sizes)]
    reference = runs[0]["seconds_per_megapixel"]
    for r in runs:
        r["seconds_per_megapixel_ratio"] = round(r["seconds_per_megapixel"] / reference, 2)
    report = {
        "what": "peak RSS (ru_maxrss) and wall time of unet_hub.segment on square uint8 "
        "images, one fresh process per measurement",
        "settings": {
            "model": f"UNet(base_channels={args.width}), bilinear, 1 class",
            "tile_size": args.tile_size or None,
            "overlap": args.overlap,
            "batch_size": args.batch_size,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before_1_5_15_min": [round(x, 2) for x in load_before],
        },
        "baseline_rss_mb": baseline["baseline_rss_mb"],
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(baseline, runs))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
