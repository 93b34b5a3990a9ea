"""The network as an ONNX graph: traced once per architecture, refilled with weights.

Exporting traces the network with ``torch.export`` (seconds per architecture), but the
traced graph depends only on the architecture, not the weights: it is kept, without
weights, in memory and under ``$UNET_HUB_CACHE`` (default ``~/.cache/unet-hub``) and
refilled with each model's weights. Every graph built that way is checked against
PyTorch before use (``runners.check_runner``), so a stale one is never trusted.
"""

from __future__ import annotations

import contextlib
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

from unet_hub.errors import UNetHubError
from unet_hub.infer.runners import (
    BACKEND_METADATA_KEY,
    CONFIG_METADATA_KEY,
    BackendError,
    OnnxRunner,
    check_runner,
    fold_batchnorm,
    onnx_available,
)
from unet_hub.infer.tiling import ALIGN
from unet_hub.model.config import USAGE_FIELDS

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)
_templates: dict[str, onnx.ModelProto] = {}  # architecture key -> graph without weights


class ExportError(UNetHubError):
    """The model cannot be exported as asked (an export that does not reproduce PyTorch
    raises ``runners.BackendError``)."""


def set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
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


#: Sizes (batch, height, width) at which an export is checked against PyTorch: square,
#: non-square, and 37×101 as ``segment`` pads it.
CHECK_SHAPES = ((1, 64, 64), (1, 96, 160), (2, 48, 112))


#: Bump when the template layout changes, so old cached templates are ignored.
_TEMPLATE_FORMAT = 1


_TEMPLATE_WEIGHTS_KEY = "unet_hub_template_weights"


_OPSET = 20


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
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
    with quiet_exporter():
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
    from unet_hub.version import __version__

    versions = [__version__, torch.__version__, version("onnx"), version("onnxscript")]
    key = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "architecture": {k: v for k, v in model.config.to_dict().items() if k not in USAGE_FIELDS},
        "versions": versions,
        "format": _TEMPLATE_FORMAT,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cache_dir() -> Path:
    """Where traced graphs are kept: ``$UNET_HUB_CACHE``, else ``~/.cache/unet-hub``."""
    if os.environ.get("UNET_HUB_CACHE"):
        return Path(os.environ["UNET_HUB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unet-hub"


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
    config = json.dumps(model.config.to_dict())
    set_metadata(proto, {CONFIG_METADATA_KEY: config, BACKEND_METADATA_KEY: "onnx"})
    return proto


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
