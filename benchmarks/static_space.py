"""The static Space's speed in Chromium against native ONNX Runtime, in the same run.

    python benchmarks/static_space.py [--runs 7] [--model unet_hub/pretrained/isbi2012]

Builds the static Space of the model (float32 and int8) into a temporary folder, serves it
on 127.0.0.1 with its Space headers and segments a 512×512 example in Debian's Chromium
(WebAssembly with threads, then with one thread, then int8 with threads). The same ONNX
files run natively through ONNX Runtime's Python API on the same 512² input. Reported:
median network time per image (``session.run`` in both cases; each configuration is
measured once per round, in turn, so drifting load on a shared machine touches all alike),
the page's whole time
(decoding, conversion and tiles; drawing excluded) against ``segment()``'s, the
browser/native ratios (target: <= 3x with threads; also one thread each) and the Space
folder's size in MB. The page's profile (ORT Web ``enableProfiling``) puts ~95 % of the
time in the convolutions, which native ONNX Runtime runs with AVX-512 and WebAssembly
with 128-bit SIMD.
Writes ``benchmarks/results/static_space.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_path import results_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "static_space.json"
IMAGE = ROOT / "examples" / "isbi2012" / "test" / "00.png"


def native_session(onnx_path: Path, batch, threads: int = 0):
    """A function running ONNX Runtime's ``session.run`` on ``batch`` (0: default threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    return lambda: session.run(None, feed)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def page_run(page) -> dict:
    """Segment IMAGE once in ``page``; the worker's network time and the page's time."""
    from support.space_page import segment_in_page

    assert segment_in_page(page, IMAGE) == "done", page.text_content("#error")
    return page.evaluate("({n: unetHub.result.networkSeconds, p: unetHub.result.pageSeconds})")


def measure(runs: int, native: dict, pages: dict) -> dict:
    """Median seconds of each native function and each page, measured in turn within
    each round, so that a change in the machine's load touches them all alike."""
    samples = {name: [] for name in [*native, *pages]}
    for round_ in range(runs + 1):  # round 0 warms up
        for name, fn in native.items():
            seconds = timed(fn)
            if round_:
                samples[name].append(seconds)
        for name, page in pages.items():
            result = page_run(page)
            if round_:
                samples[name].append(result)
    out = {name: statistics.median(samples[name]) for name in native}
    for name in pages:
        out[name] = {
            "network_s": statistics.median(r["n"] for r in samples[name]),
            "page_s": statistics.median(r["p"] for r in samples[name]),
            "threads": pages[name].evaluate("unetHub.threads"),
            "cross_origin_isolated": pages[name].evaluate("crossOriginIsolated"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "unet_hub" / "pretrained" / "isbi2012"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.output = results_path(parser, args, "output")

    from playwright.sync_api import sync_playwright

    from support.space_page import CHROMIUM, CHROMIUM_ARGS, open_page
    from unet_hub import UNet, read_image, segment
    from unet_hub.infer.export import model_batch
    from unet_hub.space.serve import serve_space
    from unet_hub.space.static import (
        INT8_MODEL_FILE,
        MODEL_FILE,
        build_static_space,
        folder_size_mb,
    )

    model = UNet.from_pretrained(args.model)
    image = read_image(IMAGE)
    batch = model_batch(image, model.config)
    with tempfile.TemporaryDirectory() as tmp:
        plain = build_static_space(args.model, Path(tmp) / "plain")
        site = build_static_space(args.model, Path(tmp) / "int8", int8=True)
        sizes = {
            "folder_mb": round(folder_size_mb(plain), 2),
            "folder_with_int8_mb": round(folder_size_mb(site), 2),
            "model_onnx_mb": round((site / MODEL_FILE).stat().st_size / 1e6, 2),
            "model_int8_onnx_mb": round((site / INT8_MODEL_FILE).stat().st_size / 1e6, 2),
            "vendor_mb": round(folder_size_mb(site / "vendor"), 2),
        }
        native = {
            "native_fp32_s": native_session(site / MODEL_FILE, batch),
            "native_fp32_one_thread_s": native_session(site / MODEL_FILE, batch, threads=1),
            "native_int8_s": native_session(site / INT8_MODEL_FILE, batch),
            "native_segment_s": lambda: segment(model, image, backend="onnx"),
        }
        with serve_space(site) as url, sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = {
                "browser_threads": open_page(chromium, url),
                "browser_one_thread": open_page(chromium, url + "?threads=0"),
                "browser_int8_threads": open_page(chromium, url + "?int8=1"),
            }
            results = measure(args.runs, native, pages)
            chromium.close()
    ratios = {
        "threads_vs_native": results["browser_threads"]["network_s"] / results["native_fp32_s"],
        "one_thread_vs_native": results["browser_one_thread"]["network_s"]
        / results["native_fp32_s"],
        "one_thread_vs_native_one_thread": results["browser_one_thread"]["network_s"]
        / results["native_fp32_one_thread_s"],
        "int8_threads_vs_native_int8": results["browser_int8_threads"]["network_s"]
        / results["native_int8_s"],
        "int8_threads_vs_fp32_threads": results["browser_int8_threads"]["network_s"]
        / results["browser_threads"]["network_s"],
        "page_vs_segment": results["browser_threads"]["page_s"] / results["native_segment_s"],
    }
    report = {
        "benchmark": "static_space",
        "image": "examples/isbi2012/test/00.png (512×512)",
        "model": Path(args.model).name,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "target": "browser network time with threads <= 3x native ONNX Runtime",
        "met": ratios["threads_vs_native"] <= 3.0,
        "results": results,
        "ratios": {k: round(v, 2) for k, v in ratios.items()},
        "sizes": sizes,
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"ratios": report["ratios"], "sizes": sizes}, indent=1))
    for key in ("native_fp32_s", "native_fp32_one_thread_s", "native_int8_s", "native_segment_s"):
        print(f"{key:28s} {results[key] * 1000:8.1f} ms")
    for key in ("browser_threads", "browser_one_thread", "browser_int8_threads"):
        r = results[key]
        print(
            f"{key:28s} {r['network_s'] * 1000:8.1f} ms network, {r['page_s'] * 1000:8.1f} ms page"
        )


if __name__ == "__main__":
    main()
