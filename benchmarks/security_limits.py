"""Memory and disk bounds of the public app (issue 13), measured against ``app.py``.

    python benchmarks/security_limits.py [--calls 50] [--megapixels 4]

(a) Memory: ``--calls`` calls of ``/segment``, each from a new session (as API clients
    make them: they never close a session), with a ``--megapixels`` image. Reports the
    app's resident memory (VmRSS) after the first call and after the last; the target
    is that the last stays within 200 MB of the first (the baseline of the same run).
(b) Disk: an app with ``UNET_TEMP_TTL=5`` gets ``--calls`` requests (upload + segment
    of distinct small images); reports the bytes of files in its temp folder at start,
    at the peak, and how many seconds after the last request it is back to its start
    size; the target is 30 s.

Writes ``benchmarks/results/security_limits.json`` and ``.md``. Takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support helpers (free_port)
from support import free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "security_limits.json"
EXAMPLE = ROOT / "examples" / "isbi2012" / "test" / "00.png"
MEMORY_TARGET_MB = 200
DISK_TARGET_SECONDS = 30
TEMP_TTL = 5


def start_app(log: Path, **env_vars: str) -> tuple[subprocess.Popen, str]:
    """``python app.py`` on a free port with ``env_vars``; returns it and its URL."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        # One address stands for 50 clients here: lift the per-client rate limit.
        "UNET_RATE_BURST": "10000",
        **env_vars,
    }
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"app.py exited:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # polling interval while the app starts
    process.kill()
    sys.exit(f"app.py did not start:\n{log.read_text()}")


def rss_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def segment_call(url: str, image: Path) -> None:
    """Upload ``image`` and run ``/segment`` on it from a new session (raw protocol)."""
    with image.open("rb") as f:
        response = httpx.post(url + "gradio_api/upload", files={"files": (image.name, f)})
    response.raise_for_status()
    [path] = response.json()
    fn_index = next(
        d["id"]
        for d in httpx.get(url + "config").json()["dependencies"]
        if d["api_name"] == "segment"
    )
    session = uuid.uuid4().hex[:11]
    payload = {"path": path, "meta": {"_type": "gradio.FileData"}}
    body = {"data": [payload, 0.5], "fn_index": fn_index, "session_hash": session}
    response = httpx.post(url + "gradio_api/queue/join", json=body, timeout=30)
    response.raise_for_status()
    with httpx.stream(
        "GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=600
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and "process_completed" in line:
                message = json.loads(line[5:])
                if not message["success"]:
                    raise RuntimeError(message["output"])
                return


def memory(calls: int, megapixels: float, folder: Path) -> dict:
    side = int((megapixels * 1e6) ** 0.5)
    base = cv2.imread(str(EXAMPLE), cv2.IMREAD_GRAYSCALE)
    image = folder / f"{side}px.png"
    reps = -(-side // base.shape[0])
    cv2.imwrite(str(image), np.tile(base, (reps, reps))[:side, :side])
    process, url = start_app(folder / "memory.log", GRADIO_TEMP_DIR=str(folder / "gradio-m"))
    try:
        segment_call(url, image)
        first = rss_mb(process.pid)
        samples = [first]
        start = time.monotonic()
        for i in range(1, calls):
            segment_call(url, image)
            samples.append(rss_mb(process.pid))
            print(f"  call {i + 1}/{calls}: RSS {samples[-1]:.0f} MB", flush=True)
        seconds = time.monotonic() - start
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {
        "image": f"{side}×{side} ({side * side / 1e6:.1f} MP)",
        "calls": calls,
        "rss_after_first_call_mb": round(first, 1),
        "rss_after_last_call_mb": round(samples[-1], 1),
        "rss_max_mb": round(max(samples), 1),
        "growth_mb": round(samples[-1] - first, 1),
        "target_growth_mb": MEMORY_TARGET_MB,
        "met": samples[-1] - first <= MEMORY_TARGET_MB,
        "seconds_per_call": round(seconds / max(calls - 1, 1), 2),
    }


def stored_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def disk(calls: int, folder: Path) -> dict:
    temp = folder / "gradio-d"
    process, url = start_app(
        folder / "disk.log", GRADIO_TEMP_DIR=str(temp), UNET_TEMP_TTL=str(TEMP_TTL)
    )
    rng = np.random.default_rng(0)
    try:
        start_bytes = stored_bytes(temp)
        peak = start_bytes
        for i in range(calls):
            image = folder / f"noise-{i}.png"  # distinct content: each upload is stored
            cv2.imwrite(str(image), rng.integers(0, 255, (256, 256), np.uint8))
            segment_call(url, image)
            peak = max(peak, stored_bytes(temp))
        last = time.monotonic()
        while stored_bytes(temp) > start_bytes and time.monotonic() - last < 120:
            time.sleep(0.5)  # polling interval while waiting for the cleanup
        back_after = time.monotonic() - last
        end_bytes = stored_bytes(temp)
    finally:
        process.terminate()
        process.wait(timeout=60)
    after_shutdown = stored_bytes(temp)
    return {
        "temp_ttl_seconds": TEMP_TTL,
        "requests": calls,
        "start_bytes": start_bytes,
        "peak_bytes": peak,
        "end_bytes": end_bytes,
        "seconds_back_to_start_size": round(back_after, 1),
        "target_seconds": DISK_TARGET_SECONDS,
        "met": end_bytes <= start_bytes and back_after <= DISK_TARGET_SECONDS,
        "bytes_after_shutdown": after_shutdown,
    }


def markdown(results: dict) -> str:
    m, d = results["memory"], results["disk"]
    return "\n".join(
        [
            "# Security limits: memory and disk (benchmarks/security_limits.py)",
            "",
            f"Machine: {results['machine']['cpu_count']} CPUs, Python "
            f"{results['machine']['python']}.",
            "",
            "| measure | value | target | met |",
            "| --- | --- | --- | --- |",
            f"| RSS growth over {m['calls']} new sessions, {m['image']} | "
            f"{m['growth_mb']} MB ({m['rss_after_first_call_mb']} → "
            f"{m['rss_after_last_call_mb']} MB, max {m['rss_max_mb']}) | "
            f"≤ {m['target_growth_mb']} MB | {'yes' if m['met'] else 'NO'} |",
            f"| temp folder back to its start size after {d['requests']} requests "
            f"(UNET_TEMP_TTL={d['temp_ttl_seconds']}) | {d['seconds_back_to_start_size']} s "
            f"(start {d['start_bytes']:,} B, peak {d['peak_bytes']:,} B, end "
            f"{d['end_bytes']:,} B) | ≤ {d['target_seconds']} s | {'yes' if d['met'] else 'NO'} |",
            f"| temp folder after shutdown | {d['bytes_after_shutdown']:,} B | 0 | "
            f"{'yes' if d['bytes_after_shutdown'] == 0 else 'NO'} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--megapixels", type=float, default=4.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("disk ...", flush=True)
        disk_result = disk(args.calls, folder)
        print(json.dumps(disk_result), flush=True)
        print("memory ...", flush=True)
        memory_result = memory(args.calls, args.megapixels, folder)
    results = {
        "what": "issue 13: app memory over new sessions, temp folder with UNET_TEMP_TTL",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "memory": memory_result,
        "disk": disk_result,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0 if memory_result["met"] and disk_result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
