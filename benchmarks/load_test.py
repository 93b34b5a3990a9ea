"""Load test of the web app: many concurrent gradio_client requests against ``app.py``.

    python benchmarks/load_test.py [--clients 50] [--model DIR_OR_REPO]

Starts ``python app.py`` on a free port (the bundled model unless --model), sends
``--clients`` requests at once through ``gradio_client`` — images of mixed sizes plus a
few bad files — and reports the latency of the good requests (p50, p95, max), the
failures (must be 0 for good inputs; bad inputs must fail with a message), the app's
peak resident memory (VmHWM) and the throughput. Writes
``benchmarks/results/load_test.json``. Not part of the test suite: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support helpers (free_port)
from results_path import results_path  # noqa: E402

from support import free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "load_test.json"
EXAMPLE = ROOT / "examples" / "isbi2012" / "test" / "00.png"
#: The good inputs, by side length, cycled over the requests.
SIZES = (256, 512, 512, 1024)
#: Every BAD_EVERY-th request sends a bad file instead.
BAD_EVERY = 10


def make_inputs(folder: Path, count: int) -> list[tuple[str, Path]]:
    """(kind, path) for each request: "good" images of SIZES, and "bad" files."""
    base = cv2.imread(str(EXAMPLE), cv2.IMREAD_GRAYSCALE)
    bad_files = {
        "text": b"not an image at all\n",
        "empty": b"",
        "truncated": EXAMPLE.read_bytes()[:2000],
    }
    inputs = []
    for i in range(count):
        if i % BAD_EVERY == BAD_EVERY - 1:
            name = list(bad_files)[(i // BAD_EVERY) % len(bad_files)]
            path = folder / f"bad-{i}-{name}.png"
            path.write_bytes(bad_files[name])
            inputs.append(("bad", path))
        else:
            size = SIZES[i % len(SIZES)]
            path = folder / f"good-{i}-{size}.png"
            cv2.imwrite(str(path), np.tile(base, (size // 256 + 1, size // 256 + 1))[:size, :size])
            inputs.append(("good", path))
    return inputs


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int, model: str | None, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        # All simulated clients share one address: lift the app's per-client rate limit.
        "UNET_RATE_BURST": "10000",
    }
    if model:
        env["UNET_MODEL"] = model
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("app.py did not start within 120 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> dict:
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(tmp, args.clients)
        port = free_port()
        app = start_app(port, args.model, tmp / "app.log")
        try:
            rss_idle = peak_rss_mb(app.pid)
            client = Client(
                f"http://127.0.0.1:{port}/",
                verbose=False,
                max_workers=args.clients,
                download_files=str(tmp / "downloads"),
            )

            def request(item: tuple[str, Path]) -> dict:
                kind, path = item
                started = time.perf_counter()
                try:
                    client.predict(handle_file(str(path)), 0.5, api_name="/segment")
                    error = None
                except Exception as e:  # the outcome is what is measured
                    error = str(e).splitlines()[0] if str(e) else type(e).__name__
                return {
                    "kind": kind,
                    "file": path.name,
                    "seconds": time.perf_counter() - started,
                    "error": error,
                }

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                outcomes = list(pool.map(request, inputs))
            wall = time.perf_counter() - started
            rss_peak = peak_rss_mb(app.pid)
            alive = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        finally:
            app.terminate()
            app.wait(timeout=30)

    good = [o for o in outcomes if o["kind"] == "good"]
    bad = [o for o in outcomes if o["kind"] == "bad"]
    latencies = [o["seconds"] for o in good if o["error"] is None]
    return {
        "what": f"{args.clients} concurrent gradio_client requests to app.py's /segment",
        "model": args.model or "bundled (unet_hub/pretrained/isbi2012)",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "good_requests": len(good),
        "good_failures": sum(o["error"] is not None for o in good),
        "bad_requests": len(bad),
        "bad_answered_with_a_message": sum(o["error"] is not None for o in bad),
        "latency_seconds": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(percentile(latencies, 0.95), 2),
            "max": round(max(latencies), 2),
        },
        "wall_seconds": round(wall, 2),
        "throughput_requests_per_second": round(len(outcomes) / wall, 2),
        "app_rss_mb": {"idle": round(rss_idle, 1), "peak": round(rss_peak, 1)},
        "server_up_afterwards": alive,
        "sizes": list(SIZES),
        "outcomes": outcomes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--model", default=None, help="UNET_MODEL for the app")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.output = results_path(parser, args, "output")
    result = run(args)
    args_out = args.output
    args_out.parent.mkdir(parents=True, exist_ok=True)
    args_out.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_seconds"]
    print(
        f"{result['good_requests']} good requests: {result['good_failures']} failed; "
        f"latency p50 {lat['p50']} s, p95 {lat['p95']} s, max {lat['max']} s\n"
        f"{result['bad_requests']} bad requests: {result['bad_answered_with_a_message']} "
        "answered with a message\n"
        f"app RSS idle {result['app_rss_mb']['idle']} MiB, peak {result['app_rss_mb']['peak']} "
        f"MiB; {result['throughput_requests_per_second']} requests/s; "
        f"server up afterwards: {result['server_up_afterwards']}\nwritten to {args_out}"
    )
    return 0 if result["good_failures"] == 0 and result["server_up_afterwards"] else 1


if __name__ == "__main__":
    sys.exit(main())
