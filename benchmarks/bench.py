"""Inference speed against the machine's ceiling and the seed's baseline, in one process.

    python benchmarks/bench.py [--repeats 7] [--no-compile] [--no-app] [--quick]

Measures, for 512×512 gray images (batch 1, float32):

- the ceiling: achieved GFLOP/s of a 4096² matmul and of a 64->64 3×3 convolution on
  512×512 (PyTorch NCHW and channels_last, ONNX Runtime);
- the baseline: the seed's network (UNet width 64, eager, NCHW, ``model(x)`` under
  ``torch.no_grad``) and the same weights through every inference path;
- the bundled width-16 model through every path, the int8 file's speed and its change to
  the shipped examples' probabilities and masks, batching and thread counts, a 2048²
  overlap-tile image, and the web app end to end.

Other work on the machine slows everything down: the variants of a table are timed in
interleaved rounds (one call of each per round, median over rounds), so their ratios stay
meaningful under load. Writes benchmarks/results/bench.json and bench.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support helpers (free_port)

from results_path import results_path  # noqa: E402

from support import free_port  # noqa: E402
from unet_hub import UNet, read_image, segment  # noqa: E402
from unet_hub.infer import backends as fp  # noqa: E402
from unet_hub.infer import runners  # noqa: E402
from unet_hub.infer.export import export_onnx, model_batch, output_change  # noqa: E402
from unet_hub.infer.segment import mask_from_probabilities  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples" / "isbi2012"
BUNDLED = ROOT / "unet_hub" / "pretrained" / "isbi2012"
SIZE = 512


# -- timing ------------------------------------------------------------------------------------


def interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant: one warm-up call each, then ``repeats``
    rounds that call every variant once, so a change in the machine's load hits all."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds x 2 of the convolutions (what PyTorch's flop counter counts)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


# -- the ceiling -------------------------------------------------------------------------------


def _onnx_conv(weight: torch.Tensor) -> bytes:
    """A one-convolution ONNX model with these weights (for ONNX Runtime's ceiling)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = weight.shape[0]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, SIZE, SIZE])],
        [numpy_helper.from_array(weight.numpy(), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    return onnx.shape_inference.infer_shapes(model).SerializeToString()


def ceiling(repeats: int) -> dict:
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 64, SIZE, SIZE)
    conv_cl = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    conv_cl.load_state_dict(conv.state_dict())
    conv_cl = conv_cl.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants = {
        "matmul": lambda: a @ b,
        "conv NCHW": lambda: conv(x),
        "conv NHWC": lambda: conv_cl(x_cl),
    }
    if fp.onnx_available():
        ort_conv = runners.OnnxRunner(_onnx_conv(conv.weight.detach()), {}, "onnx")
        x_np = x.numpy()
        variants["conv ONNX Runtime"] = lambda: ort_conv(x_np)
    with torch.inference_mode():
        seconds = interleaved(variants, repeats)
    conv_flops = 2 * 64 * 64 * 9 * SIZE * SIZE
    result = {
        "matmul_4096_gflops": gflops(2 * n**3, seconds.pop("matmul")),
        "conv_64_3x3_512_gflops": {k: gflops(conv_flops, s) for k, s in seconds.items()},
    }
    result["conv_ceiling_gflops"] = max(result["conv_64_3x3_512_gflops"].values())
    return result


# -- inference paths ---------------------------------------------------------------------------


def compiled(model: UNet) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """``torch.compile`` (inductor, frozen weights) of the fused channels_last copy, and
    the seconds the first call (the compilation) took."""
    import torch._inductor.config as inductor

    inductor.freezing = True  # constant weights: lets inductor pre-pack them for oneDNN
    module = fp.fold_batchnorm(model).to(memory_format=torch.channels_last)
    fn = torch.compile(module, dynamic=False)
    x = torch.rand(1, 1, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    return fn, time.perf_counter() - start


def paths(
    model: UNet,
    baseline: Callable[[], object],
    int8_file: Path | None,
    args: argparse.Namespace,
) -> tuple[dict[str, Callable[[], object]], dict]:
    """The timed variants of one model (network only: a 1×1×512×512 batch), and notes."""
    x = torch.rand(1, 1, SIZE, SIZE)
    batch = x.numpy()
    notes: dict = {}
    variants = {"seed baseline": baseline}
    with runners.evaluating(model):
        nchw = fp.fold_batchnorm(model)
    variants["fused NCHW"] = lambda: _infer(nchw, x)
    fused = fp.prepare(model, "fused")
    variants["fused channels_last"] = lambda: fused(batch)
    if fp.onnx_available():
        start = time.perf_counter()
        runner = fp.prepare(model, "onnx")
        notes["onnx_prepare_seconds"] = round(time.perf_counter() - start, 2)
        variants["onnx"] = lambda: runner(batch)
        if int8_file is not None:
            int8 = runners.load_onnx(int8_file)
            variants["onnx int8"] = lambda: int8(batch)
    if args.compile:
        fn, seconds = compiled(model)
        notes["compile_seconds"] = round(seconds, 1)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        variants["torch.compile"] = lambda: _infer(fn, x_cl)
    return variants, notes


def _infer(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module(x)


def table(seconds: dict[str, float], flops: int, conv_ceiling: float, reference: float) -> list:
    return [
        {
            "path": name,
            "ms": round(s * 1e3, 1),
            "speedup_vs_seed": round(reference / s, 2),
            "gflops": round(gflops(flops, s), 1),
            "percent_of_conv_ceiling": round(100 * gflops(flops, s) / conv_ceiling, 1),
        }
        for name, s in seconds.items()
    ]


# -- int8 accuracy -----------------------------------------------------------------------------


def int8_accuracy(model: UNet, int8_file: Path) -> dict:
    """The int8 file against float32 on the shipped examples: probability change and mask
    change on the test slices, and pixel error against the labels of the training slices
    (the calibration images)."""
    reference = fp.prepare(model, "onnx")
    int8 = runners.load_onnx(int8_file)
    threshold = model.config["threshold"]
    test = [model_batch(p, model.config) for p in sorted((EXAMPLES / "test").glob("*.png"))]
    result = {"test_slices": output_change(reference, int8, test, threshold)}
    errors = []
    for image in sorted((EXAMPLES / "train" / "images").glob("*.png")):
        truth = read_image(EXAMPLES / "train" / "masks" / image.name) > 0
        masks = [
            mask_from_probabilities(segment(runner, read_image(image)), threshold) > 0
            for runner in (reference, int8)
        ]
        errors.append([float((m != truth).mean()) for m in masks])
    fp32_error, int8_error = (float(e) for e in np.mean(errors, axis=0))
    result["train_slices_pixel_error"] = {
        "float32": round(fp32_error, 5),
        "int8": round(int8_error, 5),
        "change": round(int8_error - fp32_error, 5),
    }
    return result


# -- tiles, batches, threads -------------------------------------------------------------------


def tiling(model: UNet, size: int) -> dict:
    """``segment`` on a size² image (overlap-tiles of 1024): the default against eager."""
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    result = {}
    for backend in ("auto", "eager"):
        segment(model, image[:64, :64], backend=backend)
        start = time.perf_counter()
        segment(model, image, backend=backend)
        result[f"{backend}_seconds"] = round(time.perf_counter() - start, 2)
    result["auto_backend"] = fp.prepare(model).backend
    return result


def batching(model: UNet, repeats: int) -> dict:
    """ms per megapixel of 1024² tiles, one or two at a time."""
    by_name = {
        name: fp.prepare(model, name)
        for name in ("fused", "onnx")
        if name != "onnx" or fp.onnx_available()
    }
    variants = {}
    for name, runner in by_name.items():
        for n in (1, 2):
            tiles = np.random.default_rng(0).random((n, 1, 1024, 1024), dtype=np.float32)
            variants[f"{name} batch {n}"] = lambda r=runner, t=tiles: r(t)
    seconds = interleaved(variants, max(2, repeats // 2))
    return {k: round(s * 1e3 / (int(k[-1]) * 1024 * 1024 / 1e6), 1) for k, s in seconds.items()}


def threads(model: UNet, repeats: int) -> dict:
    """ms per 512² image with one thread and with the CPU budget (fused, onnx)."""
    batch = np.random.default_rng(0).random((1, 1, SIZE, SIZE), dtype=np.float32)
    counts = sorted({1, runners.cpu_budget()})
    result: dict = {"cpu_budget": runners.cpu_budget()}
    fused, default = fp.prepare(model, "fused"), torch.get_num_threads()
    for count in counts:
        torch.set_num_threads(count)
        ms = interleaved({"fused": lambda: fused(batch)}, repeats)["fused"] * 1e3
        result[f"fused_{count}_threads_ms"] = round(ms, 1)
    torch.set_num_threads(default)
    if fp.onnx_available():
        from unet_hub.infer.onnx import checked_onnx_model

        proto = checked_onnx_model(model, fp.PROBE_SHAPES)[0].SerializeToString()
        by_name = {n: runners.OnnxRunner(proto, model.config, "onnx", threads=n) for n in counts}
        seconds = interleaved({n: lambda r=r: r(batch) for n, r in by_name.items()}, repeats)
        result.update({f"onnx_{n}_threads_ms": round(s * 1e3, 1) for n, s in seconds.items()})
    return result


# -- the web app -------------------------------------------------------------------------------


def app_end_to_end(repeats: int) -> dict:
    """Seconds per ``gradio_client`` predict of a 512² example on ``python app.py``
    (bundled model), against ``segment`` on the same image in this process."""
    from gradio_client import handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    env.pop("UNET_MODEL", None)
    image = EXAMPLES / "test" / "00.png"
    with tempfile.TemporaryFile() as log:
        app = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            start = time.perf_counter()
            client = _connect(f"http://127.0.0.1:{port}/", app)
            client.predict(handle_file(str(image)), 0.5, api_name="/segment")  # warm-up
            ready = time.perf_counter() - start
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                client.predict(handle_file(str(image)), 0.5, api_name="/segment")
                times.append(time.perf_counter() - start)
        finally:
            app.terminate()
            app.wait(timeout=30)
    model = UNet.from_pretrained(BUNDLED)
    picture = read_image(image)
    library = interleaved({"segment": lambda: segment(model, picture)}, repeats)["segment"]
    predict = statistics.median(times)
    return {
        "start_to_first_answer_seconds": round(ready, 1),
        "predict_ms": round(predict * 1e3, 1),
        "segment_in_process_ms": round(library * 1e3, 1),
        "app_overhead_ms": round((predict - library) * 1e3, 1),
    }


def _connect(url: str, app: subprocess.Popen, timeout: float = 180):
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.returncode}")
        with contextlib.suppress(Exception):
            return Client(url, verbose=False)
        time.sleep(0.5)  # polling interval while the app starts
    raise RuntimeError(f"app.py did not serve {url} within {timeout}s")


# -- report ------------------------------------------------------------------------------------


def machine() -> dict:
    flags = ""
    with contextlib.suppress(OSError):
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    model_name = ""
    with contextlib.suppress(OSError, StopIteration):
        model_name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    isa = [
        f
        for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
        if f" {f}" in flags
    ]
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if fp.onnx_available():
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return {
        "cpu": model_name or platform.processor(),
        "isa": isa,
        "cpu_budget": runners.cpu_budget(),
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": versions,
    }


def markdown(report: dict) -> str:
    m, c = report["machine"], report["ceiling"]
    lines = [
        "# Inference benchmark",
        "",
        f"`python benchmarks/bench.py` — {m['cpu']} ({', '.join(m['isa'])}), CPU budget "
        f"{m['cpu_budget']}, torch {m['versions']['torch']}, load average "
        f"{report['load_average_before']} before, {report['load_average_after']} after. "
        f"Medians of {report['repeats']} interleaved rounds; 512×512, batch 1, float32.",
        "",
        "## Ceiling",
        "",
        f"- matmul 4096²: **{c['matmul_4096_gflops']:.0f} GFLOP/s**",
    ]
    lines += [
        f"- conv 64→64 3×3 on 512² ({k}): {v:.0f} GFLOP/s"
        for k, v in c["conv_64_3x3_512_gflops"].items()
    ]
    lines += [f"- conv ceiling (best of these): **{c['conv_ceiling_gflops']:.0f} GFLOP/s**", ""]
    for key, title in (
        ("width64", "The seed's network (width 64)"),
        ("bundled", "The bundled model (width 16)"),
    ):
        section = report[key]
        lines += [
            f"## {title}",
            "",
            f"{section['gflop_per_image']:.1f} GFLOP per 512² image. One-time costs: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in section["notes"].items()),
            "",
            "| path | ms | speed-up vs seed | GFLOP/s | % of conv ceiling |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['path']} | {r['ms']} | {r['speedup_vs_seed']}× | {r['gflops']} "
            f"| {r['percent_of_conv_ceiling']} |"
            for r in section["table"]
        ]
        lines.append("")
    lines += targets(report) + [""]
    for key, title in (
        ("int8", "int8 (bundled model, calibrated on the 4 shipped training slices)"),
        ("tiling", "Overlap-tile (bundled model, tiles of 1024, overlap 256)"),
        ("batching_ms_per_megapixel", "Batching (1024² tiles, ms per megapixel)"),
        ("threads", "Threads (bundled model, 512², ms)"),
        ("app", "Web app end to end (bundled model, 512² example)"),
        ("training", "Training"),
    ):
        lines += [f"## {title}", "", *bullets(report.get(key)), ""]
    return "\n".join(lines)


def bullets(value: object, indent: str = "") -> list[str]:
    """A JSON-like value as a Markdown list; None as a placeholder line."""
    if value is None:
        return [f"{indent}- not measured here (placeholder)"]
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                lines += [f"{indent}- {k}:", *bullets(v, indent + "  ")]
            else:
                lines.append(f"{indent}- {k}: {round(v, 5) if isinstance(v, float) else v}")
        return lines
    if isinstance(value, list):  # of flat dicts: one line each
        return [
            f"{indent}- " + ", ".join(f"{k} {v}" for k, v in item.items())
            if isinstance(item, dict)
            else f"{indent}- {item}"
            for item in value
        ]
    return [f"{indent}- {value}"]


def targets(report: dict) -> list[str]:
    """The issue's targets (reported, not asserted)."""
    bundled = {r["path"]: r for r in report["bundled"]["table"]}
    width64 = {r["path"]: r for r in report["width64"]["table"]}
    best16 = bundled[report["bundled"]["fastest_fp32"]]
    best64 = width64[report["width64"]["fastest_fp32"]]
    lines = [
        "## Targets",
        "",
        f"- default backend: **{report['default_backend']}**",
        f"- bundled model, fastest float32 path ({best16['path']}): "
        f"**{best16['speedup_vs_seed']}×** the seed baseline (target ≥ 10×)",
        f"- width 64, fastest float32 path ({best64['path']}): "
        f"**{best64['percent_of_conv_ceiling']} %** of the conv ceiling (target ≥ 90 %)",
    ]
    if report.get("int8"):
        change = report["int8"]["train_slices_pixel_error"]["change"]
        flipped = report["int8"]["test_slices"]["mask_pixels_changed"]
        lines.append(
            f"- int8: pixel error change **{change:+.5f}** on the labelled slices (target "
            f"≤ 0.002), {flipped:.4f} of the test slices' mask pixels changed"
        )
    if report.get("app"):
        overhead = report["app"]["app_overhead_ms"]
        lines.append(
            f"- web app end to end: **{report['app']['predict_ms']} ms**, "
            f"{overhead:+.0f} ms over the model in-process (target ≤ +150 ms)"
        )
    runs = (report.get("tiling") or {}).get("from_tiling_memory_json (its own run, its backend)")
    for run in runs or []:
        if run["size"] == 4096:
            ratio = json.loads((RESULTS / "tiling_memory.json").read_text())["runs"]
            per_pixel = next(r for r in ratio if r["size"] == 4096)["seconds_per_megapixel_ratio"]
            lines.append(
                f"- 4096² overlap-tile: peak RSS **{run['peak_rss_mb']:.0f} MiB** (target "
                f"≤ 1536), time per pixel **{per_pixel}×** that of 512² (target ≤ 1.3×)"
            )
    training = (report.get("training") or {}).get("from_training_speed_json (its own run)")
    for row in training or []:
        if row["loop"] == "unet-hub, 1 process":
            lines.append(
                f"- training (default path): **{row['pct_of_conv_ceiling']} %** of the conv "
                f"ceiling (target ≥ 80 %), {row['vs_seed']}× the seed loop's images/s"
            )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip torch.compile (slow to compile)",
    )
    parser.add_argument(
        "--no-app", dest="app", action="store_false", help="skip the web app end to end"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 repeats, no compile, no app, no 2048² image"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out = results_path(parser, args, "out")
    if args.quick:
        args.repeats, args.compile, args.app = 3, False, False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    report: dict = {
        "repeats": args.repeats,
        "machine": machine(),
        "load_average_before": load_before,
    }
    report["ceiling"] = c = ceiling(args.repeats)
    print(f"ceiling: {c}", flush=True)

    torch.manual_seed(0)
    seed = UNet(n_channels=1, n_classes=1, bilinear=True, base_channels=64).eval()
    x = torch.rand(1, 1, SIZE, SIZE)

    def seed_run(model: UNet = seed) -> torch.Tensor:
        with torch.no_grad():  # how the seed runs it
            return model(x)

    bundled = UNet.from_pretrained(BUNDLED)
    calibration = sorted((EXAMPLES / "train" / "images").glob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        int8_files = {}
        if fp.onnx_available():
            for name, model in (("width64", seed), ("bundled", bundled)):
                int8_files[name] = export_onnx(
                    model, Path(tmp) / f"{name}.onnx", int8=True, calibration_images=calibration
                )
        for name, model in (("width64", seed), ("bundled", bundled)):
            variants, notes = paths(model, seed_run, int8_files.get(name), args)
            seconds = interleaved(variants, args.repeats)
            flops = count_flops(model, x)
            rows = table(seconds, flops, c["conv_ceiling_gflops"], seconds["seed baseline"])
            if name == "bundled":  # the seed's timing is a reference here, not a path
                rows = [r for r in rows if r["path"] != "seed baseline"]
            fastest = min(rows, key=lambda r: r["ms"] if "int8" not in r["path"] else float("inf"))
            report[name] = {
                "gflop_per_image": flops / 1e9,
                "table": rows,
                "fastest_fp32": fastest["path"],
                "notes": notes,
            }
            print(f"{name}: {rows}", flush=True)
        if "bundled" in int8_files:
            report["int8"] = int8_accuracy(bundled, int8_files["bundled"])
            print(f"int8: {report['int8']}", flush=True)
    report["default_backend"] = fp.prepare(bundled).backend
    report["batching_ms_per_megapixel"] = batching(bundled, args.repeats)
    report["threads"] = threads(bundled, args.repeats)
    tiles_json = RESULTS / "tiling_memory.json"
    report["tiling"] = {
        "from_tiling_memory_json (its own run, its backend)": [
            {k: r[k] for k in ("size", "tiles", "seconds", "peak_rss_mb")}
            for r in json.loads(tiles_json.read_text())["runs"]
        ]
        if tiles_json.exists()
        else None,
    }
    if not args.quick:
        report["tiling"]["2048_measured_here"] = tiling(bundled, 2048)
    print(f"tiling: {report['tiling'].get('2048_measured_here')}", flush=True)
    report["app"] = app_end_to_end(args.repeats) if args.app else None
    speed_json = RESULTS / "training_speed.json"
    report["training"] = (
        {"from_training_speed_json (its own run)": json.loads(speed_json.read_text())["table"]}
        if speed_json.exists()
        else None
    )
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench.md").write_text(markdown(report))
    print(f"written to {args.out / 'bench.json'} and bench.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
