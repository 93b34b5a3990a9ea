"""Fast inference paths: every backend gives eager PyTorch's probabilities (≤ 1e-4)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_inference import noise, sensitive_model

from unet_hub import UNet, read_image, segment
from unet_hub.infer import backends as fp
from unet_hub.infer import runners
from unet_hub.infer.segment import mask_from_probabilities

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "isbi2012"
BUNDLED = ROOT / "unet_hub" / "pretrained" / "isbi2012"
TOLERANCE = runners.FP32_TOLERANCE

# Without the fast extra the ONNX tests are skipped on a developer's machine, never in CI
# (CI=true), where a missing onnxruntime must fail them.
needs_onnx = pytest.mark.skipif(
    not fp.onnx_available() and not os.environ.get("CI"),
    reason="ONNX Runtime is not installed: pip install -e '.[fast]' (CI runs these tests)",
)
ONNX = ["onnx"] if fp.onnx_available() or os.environ.get("CI") else []


@pytest.fixture(autouse=True, scope="module")
def onnx_cache(tmp_path_factory):
    """Traced ONNX graphs go to a fresh folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNET_HUB_CACHE", str(tmp_path_factory.mktemp("unet-hub-cache")))
        yield


@pytest.fixture(scope="module")
def tiny() -> UNet:
    return sensitive_model(base_channels=4)


@pytest.fixture(scope="module")
def bundled() -> UNet:
    return UNet.from_pretrained(BUNDLED)


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# -- folding BatchNorm ------------------------------------------------------------------------


def test_folding_batchnorm_makes_a_copy_without_batchnorm(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    folded = fp.fold_batchnorm(tiny)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in tiny.modules()) == 18
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    x = torch.rand(2, 1, 48, 80)
    with torch.inference_mode():
        assert (folded(x) - tiny(x)).abs().max() <= 1e-5


# -- every backend reproduces eager ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["fused", *ONNX, "auto"])
@pytest.mark.parametrize("shape", [(64, 64), (96, 160), (37, 101), (5, 3)])
def test_backends_match_eager_on_random_images(tiny, backend, shape):
    image = noise(shape, seed=shape[0])
    eager = segment(tiny, image, backend="eager")
    assert max_difference(segment(tiny, image, backend=backend), eager) <= TOLERANCE


@pytest.mark.parametrize("backend", ["fused", *ONNX])
def test_backends_match_eager_through_tiles_flips_and_batches(tiny, backend):
    image = noise((150, 100), seed=3)  # 3 x 2 tiles: batches of 3
    options = {"tile_size": 80, "overlap": 32, "batch_size": 3, "tta": True}
    eager = segment(tiny, image, backend="eager", **options)
    assert max_difference(segment(tiny, image, backend=backend, **options), eager) <= TOLERANCE


@pytest.mark.parametrize("backend", ["fused", *ONNX])
def test_backends_match_eager_for_other_architectures(backend):
    """Transposed-convolution up-sampling, RGB input, three classes (softmax)."""
    model = sensitive_model(base_channels=2, bilinear=False, n_channels=3, n_classes=3)
    image = noise((70, 90, 3), seed=4)
    eager = segment(model, image, backend="eager")
    assert max_difference(segment(model, image, backend=backend), eager) <= TOLERANCE


@pytest.mark.parametrize("backend", ["fused", *ONNX])
def test_backends_give_the_same_masks_on_the_shipped_examples(bundled, backend):
    for path in sorted((EXAMPLES / "test").glob("*.png")):
        image = read_image(path)[:192, 128:384]  # a crop keeps the test fast
        eager = segment(bundled, image, backend="eager")
        fast = segment(bundled, image, backend=backend)
        assert max_difference(fast, eager) <= TOLERANCE, path.name
        threshold = bundled.config["threshold"]
        flipped = mask_from_probabilities(fast, threshold) != mask_from_probabilities(
            eager, threshold
        )
        # a mask may only differ where eager itself is within the tolerance of the threshold
        assert np.all(np.abs(eager[flipped] - threshold) <= TOLERANCE), path.name


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@needs_cuda
def test_fused_is_chosen_on_cuda_without_a_warning_and_matches_eager():
    model = sensitive_model(base_channels=4).cuda()
    image = noise((96, 160))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner = fp.prepare(model, "auto")
    assert runner.backend == "fused" and runner.device.type == "cuda"
    # at run time both paths use the default math mode (TF32 on Ampere and later) ...
    tolerance = runners.probability_tolerance(torch.float32, runner.device)
    eager = segment(model, image, backend="eager")
    assert max_difference(segment(model, image), eager) <= tolerance
    # ... and in IEEE float32 they agree as on the CPU
    with runners.ieee_float32():
        eager = segment(model, image, backend="eager")
        assert max_difference(segment(model, image), eager) <= TOLERANCE


# -- the check: strict IEEE float32 whatever the math mode (the TF32 policy) ------------------


def wrongly_folded(model: UNet, eps: float = 3e-4) -> runners.TorchRunner:
    """A folding bug: BatchNorm's epsilon taken as 3e-4 instead of the model's 1e-5. Off
    by ~4e-4 in probability: within TF32's tolerance, so only a strict check catches it."""
    wrong = copy.deepcopy(model)
    for module in wrong.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = eps
    return runners.TorchRunner(fp.fold_batchnorm(wrong), model.config, "fused")


CONV, MATMUL = torch.backends.cudnn.conv, torch.backends.cuda.matmul


@contextlib.contextmanager
def legacy_tf32_api():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch 2.9 to 2.11 warn that it is legacy
        yield


@pytest.fixture
def tf32_switches():
    """PyTorch's TF32 settings, restored after the test through the legacy setters: they
    also reset the flag that PyTorch's own legacy readers (torch.export) check against the
    newer settings, raising when they disagree."""
    with legacy_tf32_api():
        cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    yield
    with legacy_tf32_api():
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(matmul)


def set_tf32(on: bool) -> None:
    CONV.fp32_precision = MATMUL.fp32_precision = "tf32" if on else "ieee"


def test_a_wrong_fold_fails_the_check_and_the_right_one_passes(tiny):
    assert (
        fp.check_runner(runners.TorchRunner(fp.fold_batchnorm(tiny), tiny.config, "fused"), tiny)
        <= TOLERANCE
    )
    with pytest.raises(
        fp.BackendError, match=r"differs from the eager model .*\(tolerance 1e-04\)"
    ):
        fp.check_runner(wrongly_folded(tiny), tiny)


@needs_cuda
def test_a_wrong_fold_fails_the_check_on_cuda_with_tf32_on(tf32_switches):
    model = sensitive_model(base_channels=4).cuda()
    set_tf32(True)
    assert (
        fp.check_runner(runners.TorchRunner(fp.fold_batchnorm(model), model.config, "fused"), model)
        <= TOLERANCE
    )
    with pytest.raises(fp.BackendError, match=r"tolerance 1e-04"):
        fp.check_runner(wrongly_folded(model), model)
    assert CONV.fp32_precision == "tf32"  # the user's setting is back


def test_the_tolerance_follows_the_math_mode(tf32_switches):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    set_tf32(True)
    assert runners.probability_tolerance(torch.float32, cuda) == runners.TF32_TOLERANCE
    assert runners.probability_tolerance(torch.float32, cpu) == runners.FP32_TOLERANCE
    assert runners.probability_tolerance(torch.float64, cuda) == runners.FP32_TOLERANCE
    assert runners.probability_tolerance(torch.float16, cuda) == runners.HALF_TOLERANCE
    CONV.fp32_precision = "ieee"  # TF32 matmuls alone also count
    assert runners.probability_tolerance(torch.float32, cuda) == runners.TF32_TOLERANCE
    set_tf32(False)
    assert runners.probability_tolerance(torch.float32, cuda) == runners.FP32_TOLERANCE
    # TF32 rounds to a 10-bit mantissa: wider than float32's 1e-4, below half's 1e-2
    assert runners.FP32_TOLERANCE < runners.TF32_TOLERANCE < runners.HALF_TOLERANCE


def test_the_legacy_switches_and_matmul_precision_are_honoured(tf32_switches):
    cuda = torch.device("cuda")
    with legacy_tf32_api():
        torch.backends.cudnn.allow_tf32 = False
        assert not runners.tf32_in_use(cuda)
        torch.backends.cudnn.allow_tf32 = True
        assert runners.tf32_in_use(cuda)
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
        assert runners.tf32_in_use(cuda)
        torch.set_float32_matmul_precision("highest")
        assert not runners.tf32_in_use(cuda)


def test_the_check_runs_in_ieee_float32_and_restores_the_settings(tiny, tf32_switches):
    cuda = torch.device("cuda")
    with runners.ieee_float32():
        pass
    with legacy_tf32_api():  # PyTorch's legacy readers (torch.export) still work after it
        assert torch.backends.cudnn.allow_tf32 in (True, False)
    set_tf32(True)
    with runners.ieee_float32():
        assert CONV.fp32_precision == MATMUL.fp32_precision == "ieee"
        assert runners.probability_tolerance(torch.float32, cuda) == TOLERANCE
    assert CONV.fp32_precision == MATMUL.fp32_precision == "tf32"
    with pytest.raises(fp.BackendError) as failed:  # strict, and restored after a failure
        fp.check_runner(wrongly_folded(tiny), tiny)
    assert float(str(failed.value).split(" by ")[1].split()[0]) > runners.FP32_TOLERANCE
    assert float(str(failed.value).split(" by ")[1].split()[0]) < runners.TF32_TOLERANCE
    assert CONV.fp32_precision == MATMUL.fp32_precision == "tf32"
    CONV.fp32_precision = "none"  # as the legacy allow_tf32 = False leaves it
    fp.check_runner(runners.TorchRunner(fp.fold_batchnorm(tiny), tiny.config, "fused"), tiny)
    assert CONV.fp32_precision == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no legacy read, hence no deprecation warning
        with runners.ieee_float32():
            pass


# -- the default uses the fast path, prepared once ---------------------------------------------


def test_the_default_segment_runs_the_fastest_checked_backend(monkeypatch):
    model = sensitive_model(base_channels=4)
    runner = fp.prepare(model)
    assert runner.backend == ("onnx" if fp.onnx_available() else "fused")
    assert fp.prepare(model) is runner  # cached
    calls = []
    original = type(runner).__call__
    monkeypatch.setattr(type(runner), "__call__", lambda r, b: calls.append(r) or original(r, b))
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    segment(model, noise((40, 50)))
    assert calls == [runner] and forwards == []  # the user's model itself never ran


def test_the_runner_is_rebuilt_when_the_weights_change():
    model = sensitive_model(base_channels=4)
    image = noise((32, 48))
    runner = fp.prepare(model, "fused")
    with torch.no_grad():  # what an optimizer step does: an in-place update
        model.outc.bias.add_(1.0)
    assert fp.prepare(model, "fused") is not runner
    eager = segment(model, image, backend="eager")
    assert max_difference(segment(model, image, backend="fused"), eager) <= TOLERANCE


def test_auto_falls_back_with_a_warning_when_a_backend_fails(monkeypatch):
    def broken(model):
        raise fp.BackendError("simulated failure")

    monkeypatch.setitem(fp._BUILDERS, "onnx", broken)
    monkeypatch.setattr(fp, "onnx_available", lambda: True)
    with pytest.warns(RuntimeWarning, match="onnx backend skipped: simulated failure"):
        runner = fp.prepare(sensitive_model(base_channels=4))
    assert runner.backend == "fused"
    monkeypatch.setitem(fp._BUILDERS, "fused", broken)
    with pytest.warns(RuntimeWarning, match="backend skipped") as caught:
        assert fp.prepare(sensitive_model(base_channels=4)).backend == "eager"
    assert [str(w.message).split()[0] for w in caught] == ["onnx", "fused"]
    with pytest.raises(fp.BackendError, match="simulated"):
        fp.prepare(sensitive_model(base_channels=4), "fused")


def test_without_onnxruntime_auto_uses_the_fused_path(monkeypatch):
    monkeypatch.setattr(fp, "onnx_available", lambda: False)
    model = sensitive_model(base_channels=4)
    assert fp.auto_candidates(model) == ["fused", "eager"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fp.prepare(model).backend == "fused"
    with pytest.raises(fp.BackendError, match=r"unet-hub\[fast\]"):
        fp.prepare(model, "onnx")


def test_a_runner_that_does_not_match_the_model_fails_the_check():
    a, b = sensitive_model(base_channels=4), sensitive_model(base_channels=4)
    with torch.no_grad():
        b.outc.bias.add_(0.5)
    with pytest.raises(fp.BackendError, match="differs from the eager model"):
        fp.check_runner(fp.prepare(a, "fused"), b)


def test_unknown_backends_are_refused(tiny):
    with pytest.raises(ValueError, match="backend must be one of"):
        segment(tiny, noise((8, 8)), backend="tensorrt")


# -- ONNX export -------------------------------------------------------------------------------


@needs_onnx
def test_export_round_trips_at_dynamic_sizes(tmp_path):
    from unet_hub.infer.export import export_onnx

    model = sensitive_model(base_channels=4)
    path = export_onnx(model, tmp_path / "tiny.onnx")
    runner = runners.load_onnx(path)
    assert runner.backend == "onnx" and runner.config == model.config
    for shape in [(64, 64), (96, 160), (37, 101)]:
        image = noise(shape, seed=shape[1])
        eager = segment(model, image, backend="eager")
        assert max_difference(segment(runner, image), eager) <= TOLERANCE, shape
    eager = segment(model, noise((200, 150)), tile_size=96, overlap=32, batch_size=4)
    tiled = segment(runner, noise((200, 150)), tile_size=96, overlap=32, batch_size=4)
    assert max_difference(tiled, eager) <= TOLERANCE  # batches of 4 and 2 tiles


@needs_onnx
def test_export_takes_a_model_folder_and_keeps_the_model_untouched(tmp_path, bundled):
    from unet_hub.infer.export import export_onnx

    before = {k: v.clone() for k, v in bundled.state_dict().items()}
    path = export_onnx(BUNDLED, tmp_path / "sub" / "isbi.onnx")
    assert path == tmp_path / "sub" / "isbi.onnx"
    assert runners.load_onnx(path).config == bundled.config
    assert all(torch.equal(before[k], v) for k, v in bundled.state_dict().items())


@needs_onnx
def test_a_traced_graph_is_reused_for_new_weights_and_retraced_when_stale(monkeypatch):
    from unet_hub.infer import onnx as export

    traces = []
    trace = export._trace
    monkeypatch.setattr(export, "_trace", lambda *a: traces.append(1) or trace(*a))
    first, second = sensitive_model(base_channels=4), UNet(base_channels=4).eval()
    export.checked_onnx_model(first, fp.PROBE_SHAPES)  # traced, unless an earlier test did
    traced = len(traces)
    export.checked_onnx_model(second, fp.PROBE_SHAPES)  # same architecture, other weights
    assert len(traces) == traced  # and it passed the check against ``second``
    # A cached graph that computes something else (say, traced by older code) is retraced.
    import onnx

    key = export._architecture_key(second)
    stale = onnx.ModelProto()
    stale.CopyFrom(export._templates[key])
    next(n for n in stale.graph.node if n.op_type == "Relu").op_type = "Sigmoid"
    export._templates[key] = stale
    export.checked_onnx_model(second, fp.PROBE_SHAPES)
    assert len(traces) == traced + 1


@needs_onnx
def test_load_onnx_refuses_files_it_cannot_use(tmp_path):
    (tmp_path / "junk.onnx").write_text("not a model")
    with pytest.raises(fp.BackendError, match="not a readable ONNX file"):
        runners.load_onnx(tmp_path / "junk.onnx")


# -- int8 --------------------------------------------------------------------------------------


@needs_onnx
def test_int8_is_an_explicit_opt_in_that_changes_few_pixels(tmp_path, bundled):
    from unet_hub.infer.export import INT8_CHANGE_METADATA_KEY, export_onnx
    from unet_hub.infer.onnx import ExportError

    with pytest.raises(ExportError, match="calibration_images"):
        export_onnx(bundled, tmp_path / "q.onnx", int8=True)
    calibration = [read_image(p)[:256, :256] for p in (EXAMPLES / "train" / "images").glob("*")]
    path = export_onnx(bundled, tmp_path / "q.onnx", int8=True, calibration_images=calibration)
    runner = runners.load_onnx(path)
    assert runner.backend == "onnx-int8"
    assert fp.prepare(bundled).backend != "onnx-int8"  # never chosen automatically
    metadata = runners.read_onnx_metadata(path)
    assert json.loads(metadata[INT8_CHANGE_METADATA_KEY])["mask_pixels_changed"] <= 0.005
    image = read_image(EXAMPLES / "test" / "00.png")[256:, 256:]
    threshold = bundled.config["threshold"]
    eager = mask_from_probabilities(segment(bundled, image, backend="eager"), threshold)
    int8 = mask_from_probabilities(segment(runner, image), threshold)
    assert (eager != int8).mean() <= 0.005  # measured: 0.1 % (benchmarks/results/bench.md)


# -- eager is eager; the trace cache on disk ---------------------------------------------------


def test_the_eager_backend_runs_the_pytorch_model_itself(tiny):
    """What the fast backends are compared with is the model's own forward pass: one
    call per batch, and the probabilities of ``sigmoid(model(x))``."""
    image = noise((64, 96), seed=9)
    forwards = []
    hook = tiny.register_forward_hook(lambda *_: forwards.append(1))
    try:
        eager = segment(tiny, image, backend="eager")
    finally:
        hook.remove()
    assert len(forwards) == 1
    x = torch.from_numpy(image.astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        direct = torch.sigmoid(tiny(x))[0, 0].numpy()
    assert max_difference(eager, direct) <= 1e-6


@needs_onnx
def test_a_traced_graph_is_kept_under_unet_hub_cache_and_read_back_from_disk(tiny, monkeypatch):
    """A new process (nothing in memory) reads the graph traced by an earlier one from
    ``$UNET_HUB_CACHE`` (set for this module by ``onnx_cache``) instead of tracing it."""
    from unet_hub.infer import onnx as export

    export.checked_onnx_model(tiny, fp.PROBE_SHAPES)  # traced, unless an earlier test did
    stored = Path(os.environ["UNET_HUB_CACHE"]) / "onnx" / f"{export._architecture_key(tiny)}.onnx"
    assert stored.is_file() and stored.stat().st_size > 0
    traces = []
    trace = export._trace
    monkeypatch.setattr(export, "_trace", lambda *a: traces.append(1) or trace(*a))
    monkeypatch.setattr(export, "_templates", {})  # forgotten in memory, still on disk
    runner = fp.prepare(sensitive_model(base_channels=4), "onnx")
    assert traces == [] and runner.backend == "onnx"  # read back, not traced again
