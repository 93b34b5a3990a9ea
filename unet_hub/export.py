"""ONNX export: the folded network as an ONNX file ONNX Runtime can run, optionally int8.

``export_onnx(model, "model.onnx")`` writes float32 N×C×H×W -> logits with dynamic batch,
height and width (each side a multiple of 16; ``segment`` pads images to that), checked
against PyTorch to 1e-4 in probability at several sizes. The model's config travels in the
file's metadata, so ``unet_hub.fastpath.load_onnx(path)`` gives a runner ``segment`` takes.

``int8=True`` adds static quantization (ONNX Runtime, QDQ format: per-channel int8
weights, uint8 activations, min/max calibrated on ``calibration_images``). The first and
last convolutions stay in float32: the first sees the raw image and the last writes the
logits: on the bundled model, keeping them halved the mask pixels int8 changes on the
shipped test slices (0.22 % -> 0.11 %) for a smaller speed-up (about 2.0x -> 1.7x over
float32 ONNX Runtime). int8 changes the output, so it is only ever used on request.

Exporting traces the network with ``torch.export`` (seconds per architecture), but the
traced graph depends only on the architecture, not the weights: it is kept, without
weights, in memory and under ``$UNET_HUB_CACHE`` (default ``~/.cache/unet-hub``) and
refilled with each model's weights. Every graph built that way is checked against
PyTorch before use (``fastpath.check_runner``), so a stale one is never trusted.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import UNetHubError
from .fastpath import (
    BACKEND_METADATA_KEY,
    CONFIG_METADATA_KEY,
    BackendError,
    OnnxRunner,
    check_runner,
    fold_batchnorm,
    onnx_available,
    probabilities_from_logits,
)
from .imaging import read_image, to_model_input
from .inference import ALIGN, mirror_indices, round_up
from .model import UNet

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: Sizes (batch, height, width) at which an export is checked against PyTorch: square,
#: non-square, and 37×101 as ``segment`` pads it.
CHECK_SHAPES = ((1, 64, 64), (1, 96, 160), (2, 48, 112))
#: Key of the int8 file's measured change (JSON) in its metadata.
INT8_CHANGE_METADATA_KEY = "unet_hub_int8_change"
#: Config keys that do not change the network's graph (the rest select the architecture).
_NOT_ARCHITECTURE = ("labels", "input_scaling", "threshold")
#: Bump when the template layout changes, so old cached templates are ignored.
_TEMPLATE_FORMAT = 1
_TEMPLATE_WEIGHTS_KEY = "unet_hub_template_weights"
_OPSET = 20


class ExportError(UNetHubError):
    """The model cannot be exported as asked (an export that does not reproduce PyTorch
    raises ``fastpath.BackendError``)."""


# -- the float32 graph -----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter and quantizer warn about deprecations inside torch and about optional
    torchvision ops, and log each optimization pass: none of it concerns the user."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _trace(folded: nn.Module, n_channels: int) -> onnx.ModelProto:
    """Export ``folded`` with a dynamic batch and sides that are multiples of 16."""
    batch = torch.export.Dim("batch", min=1)
    rows, cols = torch.export.Dim("rows", min=1), torch.export.Dim("cols", min=1)
    example = torch.zeros(2, n_channels, 4 * ALIGN, 6 * ALIGN)
    with _quiet_exporter():
        program = torch.onnx.export(
            folded,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch, 2: ALIGN * rows, 3: ALIGN * cols}},
            opset_version=_OPSET,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    for value in (*proto.graph.input, *proto.graph.output):  # "16*rows" -> "height"
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    return proto


def _architecture_key(model: nn.Module) -> str:
    """Names the traced graph: the model class, its architecture and the tools' versions."""
    from . import __version__

    versions = [__version__, torch.__version__, version("onnx"), version("onnxscript")]
    key = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "architecture": {k: v for k, v in model.config.items() if k not in _NOT_ARCHITECTURE},
        "versions": versions,
        "format": _TEMPLATE_FORMAT,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cache_dir() -> Path:
    """Where traced graphs are kept: ``$UNET_HUB_CACHE``, else ``~/.cache/unet-hub``."""
    if os.environ.get("UNET_HUB_CACHE"):
        return Path(os.environ["UNET_HUB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unet-hub"


_templates: dict[str, onnx.ModelProto] = {}


def _strip(proto: onnx.ModelProto, names: set[str]) -> onnx.ModelProto | None:
    """A copy of ``proto`` without the initializers named in ``names`` (the weights), or
    None if some weight is not an initializer of that name (the exporter transformed or
    deduplicated it), so that refilling could not reproduce another model."""
    import onnx

    removed = sorted(init.name for init in proto.graph.initializer if init.name in names)
    if set(removed) != names:
        return None
    template = onnx.ModelProto()
    template.CopyFrom(proto)
    kept = [init for init in template.graph.initializer if init.name not in names]
    del template.graph.initializer[:]
    template.graph.initializer.extend(kept)
    template.metadata_props.add(key=_TEMPLATE_WEIGHTS_KEY, value=json.dumps(removed))
    return template


def _fill(template: onnx.ModelProto, weights: dict[str, np.ndarray]) -> onnx.ModelProto | None:
    """The template with these weights, or None if it wants weights the model lacks."""
    import onnx
    from onnx import numpy_helper

    props = {p.key: p.value for p in template.metadata_props}
    names = json.loads(props[_TEMPLATE_WEIGHTS_KEY])
    if not set(names) <= set(weights):
        return None
    proto = onnx.ModelProto()
    proto.CopyFrom(template)
    proto.graph.initializer.extend(numpy_helper.from_array(weights[n], n) for n in names)
    keep = [p for p in proto.metadata_props if p.key != _TEMPLATE_WEIGHTS_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    return proto


def _cached_template(key: str) -> onnx.ModelProto | None:
    import onnx

    if key not in _templates:
        path = cache_dir() / "onnx" / f"{key}.onnx"
        try:
            _templates[key] = onnx.load(str(path))
        except Exception:  # missing, unreadable or truncated: trace again
            return None
    return _templates[key]


def _store_template(key: str, template: onnx.ModelProto) -> None:
    _templates[key] = template
    folder = cache_dir() / "onnx"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as f:
            f.write(template.SerializeToString())
        os.replace(f.name, folder / f"{key}.onnx")  # atomic: readers never see half a file
    except OSError as e:  # a read-only home only costs the trace next time
        log.info("could not cache the ONNX graph in %s: %s", folder, e)


def onnx_model(model: nn.Module, *, use_cache: bool = True) -> onnx.ModelProto:
    """The model, BatchNorm folded, as an in-memory float32 ONNX model (not yet checked).

    ``use_cache=False`` traces afresh and replaces the cached graph of the architecture.
    """
    if not onnx_available():
        raise ExportError("ONNX export needs the fast extra: pip install 'unet-hub[fast]'")
    folded = fold_batchnorm(model).float().cpu()
    weights = {k: v.numpy() for k, v in folded.state_dict().items()}
    key = _architecture_key(model)
    template = _cached_template(key) if use_cache else None
    proto = _fill(template, weights) if template is not None else None
    if proto is None:
        log.info("tracing the network for ONNX (once per architecture)")
        proto = _trace(folded, model.config["n_channels"])
        template = _strip(proto, set(weights))
        if template is not None:
            _store_template(key, template)
    config = json.dumps(model.config)
    _set_metadata(proto, {CONFIG_METADATA_KEY: config, BACKEND_METADATA_KEY: "onnx"})
    return proto


def _set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "unet-hub"
    proto.doc_string = (
        "U-Net: float32 image N×C×H×W (H and W multiples of 16, pixels scaled as the "
        f"config's input_scaling says) -> logits N×classes×H×W; config in '{CONFIG_METADATA_KEY}'"
    )


# -- checks ------------------------------------------------------------------------------------


def model_batch(image: np.ndarray | str | Path, config: dict) -> np.ndarray:
    """An image (array or file) as a 1×C×H×W float32 batch, mirrored at its bottom and
    right edges up to multiples of 16 as ``segment`` does."""
    if not isinstance(image, np.ndarray):
        image = read_image(image)
    x = to_model_input(image, config["n_channels"], config["input_scaling"])
    _, h, w = x.shape
    rows, cols = mirror_indices(h, 0, round_up(h)), mirror_indices(w, 0, round_up(w))
    return np.ascontiguousarray(x[:, rows[:, None], cols])[None]


def output_change(
    reference: OnnxRunner, other: OnnxRunner, batches: Sequence[np.ndarray], threshold: float
) -> dict[str, float]:
    """How much ``other`` changes ``reference``'s output on ``batches``: the largest and
    mean probability change, and the fraction of pixels whose mask changes (for one class
    at ``threshold``, else the argmax class)."""
    largest, total, changed, pixels = 0.0, 0.0, 0, 0
    for batch in batches:
        p = probabilities_from_logits(reference(batch)).numpy()
        q = probabilities_from_logits(other(batch)).numpy()
        largest = max(largest, float(np.abs(p - q).max()))
        total += float(np.abs(p - q).sum())
        if p.shape[1] == 1:
            changed += int(((p > threshold) != (q > threshold)).sum())
        else:
            changed += int((p.argmax(1) != q.argmax(1)).sum())
        pixels += p[:, 0].size
    return {
        "max_probability_change": largest,
        "mean_probability_change": total / (pixels * p.shape[1]),
        "mask_pixels_changed": changed / pixels,
    }


def checked_onnx_model(
    model: nn.Module, shapes: Sequence[tuple[int, int, int]] = CHECK_SHAPES
) -> tuple[onnx.ModelProto, OnnxRunner]:
    """``onnx_model(model)`` and its runner, checked against PyTorch at ``shapes`` (batch,
    height, width); a cached graph that fails the check (traced by older code) is traced
    afresh, which must then pass (else ``BackendError``)."""
    for use_cache in (True, False):
        proto = onnx_model(model, use_cache=use_cache)
        runner = OnnxRunner(proto.SerializeToString(), model.config, "onnx")
        try:
            check_runner(runner, model, shapes)
        except BackendError:
            if not use_cache:
                raise
            log.warning("the cached ONNX graph does not match the model: tracing it again")
        else:
            return proto, runner
    raise AssertionError("unreachable")


# -- int8 --------------------------------------------------------------------------------------


def quantize_int8(proto: onnx.ModelProto, batches: Sequence[np.ndarray]) -> onnx.ModelProto:
    """Static int8 quantization of a float32 export, calibrated on ``batches``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = proto.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{input_name: b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        fp32, prepared, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, str(fp32))
        # Symbolic shape inference cannot follow the "height"/"width" arithmetic of the
        # pooling levels; ONNX's own shape inference is enough for quantization.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        convs = [n for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        quantize_static(
            str(prepared),
            str(int8),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[convs[0].name, convs[-1].name],
        )
        return onnx.load(str(int8))


# -- the public entry point ---------------------------------------------------------------------


def _as_model(model_or_dir: nn.Module | str | Path) -> nn.Module:
    if isinstance(model_or_dir, nn.Module):
        model = model_or_dir
        param = next(model.parameters())
        if param.device.type != "cpu" or param.dtype != torch.float32:
            model = copy.deepcopy(model).float().cpu()
        return model
    return UNet.from_pretrained(model_or_dir)


def export_onnx(
    model_or_dir: nn.Module | str | Path,
    path: str | Path,
    *,
    int8: bool = False,
    calibration_images: Sequence[np.ndarray | str | Path] | None = None,
) -> Path:
    """Write the model (a ``UNet``, a saved model folder or a Hub repo id) as ONNX.

    The float32 export is checked against PyTorch (``CHECK_SHAPES``, 1e-4) before
    anything is written. ``int8=True`` quantizes it, calibrated on ``calibration_images``
    (a few training images, arrays or files); the change it makes on them is logged and
    stored in the file's metadata (``INT8_CHANGE_METADATA_KEY``). Returns the path.
    """
    if int8 and not calibration_images:
        raise ExportError("int8 export needs calibration_images: a few training images")
    model = _as_model(model_or_dir)
    proto, _ = checked_onnx_model(model)
    if int8:
        batches = [model_batch(image, model.config) for image in calibration_images]
        reference = OnnxRunner(proto.SerializeToString(), model.config, "onnx")
        proto = quantize_int8(proto, batches)
        change = output_change(
            reference,
            OnnxRunner(proto.SerializeToString(), model.config, "onnx-int8"),
            batches,
            model.config["threshold"],
        )
        log.info("int8 change on the calibration images: %s", change)
        _set_metadata(
            proto,
            {
                CONFIG_METADATA_KEY: json.dumps(model.config),
                BACKEND_METADATA_KEY: "onnx-int8",
                INT8_CHANGE_METADATA_KEY: json.dumps(change),
            },
        )
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path
