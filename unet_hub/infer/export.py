"""ONNX export: the folded network as an ONNX file ONNX Runtime can run, optionally int8.

``export_onnx(model, "model.onnx")`` writes float32 N×C×H×W -> logits with dynamic batch,
height and width (each side a multiple of 16; ``segment`` pads images to that), checked
against PyTorch to 1e-4 in probability at several sizes. The model's config travels in the
file's metadata, so ``unet_hub.infer.runners.load_onnx(path)`` gives a runner ``segment`` takes.

``int8=True`` adds static quantization (ONNX Runtime, QDQ format: per-channel int8
weights, uint8 activations, min/max calibrated on ``calibration_images``). The first and
last convolutions stay in float32: the first sees the raw image and the last writes the
logits; keeping them in float32 trades some of the speed-up for fewer changed mask
pixels (benchmarks/results/bench.md has the figures). int8 changes the output, so it is
only ever used on request.

The graph itself comes from ``unet_hub.infer.onnx`` (traced once per architecture,
refilled with each model's weights, checked against PyTorch before use).
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from unet_hub.data.images import read_image, to_model_input
from unet_hub.infer.onnx import ExportError, checked_onnx_model, quiet_exporter, set_metadata
from unet_hub.infer.runners import (
    BACKEND_METADATA_KEY,
    CONFIG_METADATA_KEY,
    OnnxRunner,
    probabilities_from_logits,
)
from unet_hub.infer.tiling import mirror_indices, round_up
from unet_hub.model.unet import UNet

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: Key of the int8 file's measured change (JSON) in its metadata.
INT8_CHANGE_METADATA_KEY = "unet_hub_int8_change"


# -- the float32 graph -----------------------------------------------------------------------


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

    with tempfile.TemporaryDirectory() as tmp, quiet_exporter():
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
        set_metadata(
            proto,
            {
                CONFIG_METADATA_KEY: json.dumps(model.config.to_dict()),
                BACKEND_METADATA_KEY: "onnx-int8",
                INT8_CHANGE_METADATA_KEY: json.dumps(change),
            },
        )
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path
