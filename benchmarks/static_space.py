"""The static Space's speed in Chromium against native ONNX Runtime, in the same run.

    python benchmarks/static_space.py [--runs 7] [--model unet_hub/pretrained/isbi2012]

Builds the static Space of the model (float32 and int8) into a temporary folder, serves it
on 127.0.0.1 with its Space headers and segments a 512×512 example in Debian's Chromium
(WebAssembly with threads, then with one thread, then int8 with threads). The same ONNX
files run natively through ONNX Runtime's Python API on the same 512² input. Reported:
median network time per image (``session.run`` in both cases), the page's whole time
(decoding, conversion, tiles, drawing excluded) against ``segment()``'s, the browser/
native ratios (target: <= 3x with threads) and the Space folder's size in MB.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "static_space.json"
IMAGE = ROOT / "examples" / "isbi2012" / "test" / "00.png"


def native(onnx_path: Path, batch, runs: int) -> float:
    """Median seconds of ONNX Runtime's ``session.run`` on ``batch`` (default threads)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def native_segment(model, image, runs: int) -> float:
    """Median seconds of the whole ``segment()`` call (ONNX Runtime backend)."""
    from unet_hub import segment

    segment(model, image, backend="onnx")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        segment(model, image, backend="onnx")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def browser(browser_, url: str, query: str, runs: int) -> dict:
    """Median network and page seconds of segmenting IMAGE ``runs`` times in the page."""
    from support.space_page import open_page, segment_in_page

    page = open_page(browser_, url + query)
    threads = page.evaluate("crossOriginIsolated") and "1 thread)" not in page.text_content(
        "#status"
    )
    network, whole = [], []
    for k in range(runs + 1):
        assert segment_in_page(page, IMAGE) == "done", page.text_content("#error")
        if k:  # the first run warms up
            result = page.evaluate(
                "({n: unetHub.result.networkSeconds, p: unetHub.result.pageSeconds})"
            )
            network.append(result["n"])
            whole.append(result["p"])
    status = page.text_content("#status")
    page.close()
    return {
        "network_s": statistics.median(network),
        "page_s": statistics.median(whole),
        "threads_used": threads,
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "unet_hub" / "pretrained" / "isbi2012"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from support.space_page import CHROMIUM, CHROMIUM_ARGS
    from unet_hub import UNet, read_image
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
        results = {
            "native_fp32_s": native(site / MODEL_FILE, batch, args.runs),
            "native_int8_s": native(site / INT8_MODEL_FILE, batch, args.runs),
            "native_segment_s": native_segment(model, image, args.runs),
        }
        with serve_space(site) as url, sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results["browser_threads"] = browser(chromium, url, "", args.runs)
            results["browser_one_thread"] = browser(chromium, url, "?threads=0", args.runs)
            results["browser_int8_threads"] = browser(chromium, url, "?int8=1", args.runs)
            chromium.close()
    ratios = {
        "threads_vs_native": results["browser_threads"]["network_s"] / results["native_fp32_s"],
        "one_thread_vs_native": results["browser_one_thread"]["network_s"]
        / results["native_fp32_s"],
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
    for key in ("native_fp32_s", "native_int8_s", "native_segment_s"):
        print(f"{key:28s} {results[key] * 1000:8.1f} ms")
    for key in ("browser_threads", "browser_one_thread", "browser_int8_threads"):
        r = results[key]
        print(
            f"{key:28s} {r['network_s'] * 1000:8.1f} ms network, {r['page_s'] * 1000:8.1f} ms page"
        )


if __name__ == "__main__":
    main()
