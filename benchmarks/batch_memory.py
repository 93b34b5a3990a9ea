"""Memory over a long folder: ``unet-hub predict``'s run (``run_batch``) over 200 images.

    python benchmarks/batch_memory.py [--images 200] [--model unet_hub/pretrained/isbi2012]

Writes crops of the shipped ISBI test slices, of three sizes in turn, to a temporary
folder and segments them one after the other with objects (watershed) and the per-object
table, as ``unet-hub predict DIR --out OUT --watershed`` does, sampling this process's
resident set size (RSS) after every image. Memory is flat when RSS after the last image
is within ``TARGET_RATIO`` of RSS after image 20 (the baseline of the same run, once the
inference set-up and allocator pools are warm). Writes
``benchmarks/results/batch_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_path import results_path  # noqa: E402

from unet_hub import UNet  # noqa: E402
from unet_hub.infer.batch import find_images, plan_jobs, run_batch  # noqa: E402
from unet_hub.infer.instances import InstanceOptions  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "batch_memory.json"
SLICES = sorted((ROOT / "examples" / "isbi2012" / "test").glob("*.png"))
#: Crop sizes (height, width) used in turn: a folder rarely holds one size only.
SIZES = ((256, 256), (200, 320), (320, 288))
BASELINE_IMAGE = 20
TARGET_RATIO = 1.05


def rss_mb() -> float:
    """This process's current resident set size in MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_images(folder: Path, n: int) -> None:
    """``n`` crops of the ISBI test slices, at ``SIZES`` in turn."""
    slices = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in SLICES]
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        image = slices[i % len(slices)]
        y, x = (i * 37) % (image.shape[0] - h), (i * 53) % (image.shape[1] - w)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image[y : y + h, x : x + w])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default=str(ROOT / "unet_hub" / "pretrained" / "isbi2012"))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.output = results_path(parser, args, "output")
    model = UNet.from_pretrained(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        write_images(inputs, args.images)
        found, _ = find_images([inputs])
        jobs = plan_jobs(found, out)
        rss = []
        start = time.perf_counter()
        run = run_batch(model, jobs, out, instances=InstanceOptions(watershed=True))
        for outcome in run:
            assert outcome.error is None, outcome.error
            rss.append(round(rss_mb(), 1))
        seconds = time.perf_counter() - start
        table_lines = sum(1 for _ in (out / "objects.csv").open()) - 1
    base, last = rss[BASELINE_IMAGE - 1], rss[-1]
    result = {
        "images": args.images,
        "sizes": [list(s) for s in SIZES],
        "objects_in_table": table_lines,
        "seconds": round(seconds, 1),
        "rss_mb_after_image_1": rss[0],
        f"rss_mb_after_image_{BASELINE_IMAGE}": base,
        f"rss_mb_after_image_{args.images}": last,
        "rss_mb_max": max(rss),
        "growth_mb": round(last - base, 1),
        "ratio": round(last / base, 4),
        "target_ratio": TARGET_RATIO,
        "flat": last / base <= TARGET_RATIO,
        "rss_mb_every_10": rss[9::10],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"RSS after image {BASELINE_IMAGE}: {base} MiB, after image {args.images}: {last} MiB "
        f"(growth {result['growth_mb']} MiB, ratio {result['ratio']}; target <= {TARGET_RATIO})"
    )
    print(f"wrote {args.output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
