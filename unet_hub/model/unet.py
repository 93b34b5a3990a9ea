"""The U-Net assembled from its parts, with Hugging Face Hub save/load.

``UNet`` subclasses ``huggingface_hub.PyTorchModelHubMixin``: ``save_pretrained`` writes
``config.json``, ``model.safetensors`` and a model card, and ``from_pretrained`` takes a
local folder or a Hub repo id. Everything a caller needs to use a saved model (input
channels, pixel scaling, classes, what the foreground means, the recommended threshold)
is a constructor argument, so it travels in ``config.json``.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import (
    EvalResult,
    ModelCard,
    PyTorchModelHubMixin,
)
from torch import nn

from unet_hub.errors import ConfigError, ModelLoadError
from unet_hub.files import CONFIG_NAME, WEIGHTS_NAME
from unet_hub.model.config import INPUT_SCALINGS
from unet_hub.model.download import (
    HUB_ERRORS,
    fail_fast_if_unreachable,
    fetch,
    hub_error_message,
    looks_like_a_path,
)
from unet_hub.model.parts import DoubleConv, Down, OutConv, Up
from unet_hub.model.weights import count_parameters, load_weights

#: Version of the ``config.json`` layout; a saved model with a newer one is refused.
CONFIG_FORMAT = 1
LIBRARY_NAME = "unet-hub"
#: Keys that ``config.json`` holds besides the constructor arguments.
_CONFIG_EXTRA_KEYS = ("format", "library_name", "model_type")
#: The smallest side the four 2x poolings can take; smaller inputs are padded up to it.
_MIN_SIDE = 16

MODEL_CARD_TEMPLATE = resources.files("unet_hub").joinpath("model_card.md").read_text("utf-8")


class UNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name=LIBRARY_NAME,
    pipeline_tag="image-segmentation",
    license="mit",
    tags=["unet", "image-segmentation", "semantic-segmentation", "pytorch"],
    paper_url="https://arxiv.org/abs/1505.04597",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """U-Net (Ronneberger et al., 2015) with padded convolutions and BatchNorm.

    Args:
        n_channels: input channels (1 for grayscale, 3 for RGB).
        n_classes: output channels; 1 means one foreground class scored by a sigmoid,
            more mean mutually exclusive classes scored by a softmax.
        bilinear: up-sample with bilinear interpolation (True) or transposed convolutions.
        base_channels: width of the first level; the levels are 1, 2, 4, 8 and 8 times it
            (64 gives the classic network).
        labels: the name of each output class, e.g. ``["cell interior"]``; by default
            ``["foreground"]`` for one class, ``["class 0", ...]`` for several.
        input_scaling: how pixels are scaled to [0, 1] (see ``unet_hub.data.images``).
        threshold: recommended probability threshold for a binary mask.
    """

    def __init__(
        self,
        n_channels: int = 1,
        n_classes: int = 1,
        bilinear: bool = True,
        base_channels: int = 64,
        labels: list[str] | None = None,
        input_scaling: str = "dtype",
        threshold: float = 0.5,
    ):
        super().__init__()
        if labels is None:
            labels = ["foreground"] if n_classes == 1 else [f"class {i}" for i in range(n_classes)]
        self.config = validate_config(
            {
                "n_channels": n_channels,
                "n_classes": n_classes,
                "bilinear": bilinear,
                "base_channels": base_channels,
                "labels": list(labels) if isinstance(labels, tuple) else labels,
                "input_scaling": input_scaling,
                "threshold": threshold,
            }
        )
        b = base_channels
        self.inc = DoubleConv(n_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 8 * b)
        self.up1 = Up(16 * b, 4 * b, bilinear)
        self.up2 = Up(8 * b, 2 * b, bilinear)
        self.up3 = Up(4 * b, b, bilinear)
        self.up4 = Up(2 * b, b, bilinear)
        self.outc = OutConv(b, n_classes)

    @property
    def n_channels(self) -> int:
        return self.config["n_channels"]

    @property
    def n_classes(self) -> int:
        return self.config["n_classes"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch N×C×H×W to logits N×classes×H×W (any H and W)."""
        h, w = x.shape[-2:]
        if h < _MIN_SIDE or w < _MIN_SIDE:
            pad_h, pad_w = max(0, _MIN_SIDE - h), max(0, _MIN_SIDE - w)
            x = nn.functional.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)[..., :h, :w]

    # -- Hub mixin hooks ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> UNet:
        """Load a model from a ``save_pretrained`` folder or a Hub repo id.

        Takes the mixin's arguments (``revision``, ``token``, ``cache_dir``,
        ``force_download``, ``local_files_only``, ``map_location``); any config key given
        as a keyword overrides the saved one (e.g. ``threshold=0.3``). Every failure is a
        ``ModelLoadError`` that says what to do.
        """
        name = str(pretrained_model_name_or_path)
        is_folder = os.path.isdir(name)
        if is_folder and not os.path.isfile(os.path.join(name, CONFIG_NAME)):
            raise ModelLoadError(f"{name}: no {CONFIG_NAME} in this folder; not a unet-hub model")
        if not is_folder and looks_like_a_path(name):
            raise ModelLoadError(f"{name}: no such model folder")
        try:
            if not is_folder:
                fail_fast_if_unreachable(name, CONFIG_NAME, **kwargs)
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except HUB_ERRORS as e:
            message = hub_error_message(
                name, e, filename=CONFIG_NAME, revision=kwargs.get("revision")
            )
            raise ModelLoadError(message) from None
        except json.JSONDecodeError as e:  # the mixin parses config.json itself
            raise ModelLoadError(f"{name}: {CONFIG_NAME} is not valid JSON ({e})") from None

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` and the full ``config.json``."""
        super()._save_pretrained(save_directory)
        # safetensors creates the file owner-only; a model folder is meant to be shared.
        (save_directory / WEIGHTS_NAME).chmod(0o644)
        config = {
            **self.config,
            "format": CONFIG_FORMAT,
            "library_name": LIBRARY_NAME,
            "model_type": "unet",
        }
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Render ``model_card.md`` with this model's config and the training facts passed
        as ``model_card_kwargs``: ``metrics`` (name -> value), ``eval_dataset`` (the name
        of the data they were measured on), ``training`` (a dict) and ``repo_id``.

        Metrics measured on a named data set also go into the card's YAML ``model-index``,
        where the Hub and ``card_metrics`` read them.
        """
        card = super().generate_model_card(
            *args, config=self.config, n_parameters=count_parameters(self), **kwargs
        )
        metrics, dataset = kwargs.get("metrics"), kwargs.get("eval_dataset")
        if metrics and dataset:
            card.data.model_name = kwargs.get("repo_id") or "unet"
            card.data.eval_results = [
                EvalResult(
                    task_type="image-segmentation",
                    dataset_type=_slug(dataset),
                    dataset_name=dataset,
                    metric_type=_slug(name),
                    metric_name=name,
                    metric_value=value,
                )
                for name, value in metrics.items()
            ]
        return card

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        config: dict | None = None,
        **model_kwargs: Any,
    ) -> UNet:
        """Build the model from its config and load its safetensors weights strictly.

        Unlike the mixin's default, mismatched weight names or shapes are an error, and
        pickled weight files are never read.
        """
        hub_kwargs = {
            "revision": revision,
            "cache_dir": cache_dir,
            "force_download": force_download,
            "local_files_only": local_files_only,
            "token": token,
        }
        if config is None:
            # The mixin swallows the reason a config could not be fetched: fetch it again
            # to report that reason, or say plainly that the config is missing.
            fetch(model_id, CONFIG_NAME, **hub_kwargs)
            raise ModelLoadError(f"{model_id}: no {CONFIG_NAME}; this is not a unet-hub model")
        check_saved_config(config, source=model_id)
        model = cls(**model_kwargs)
        weights_file = fetch(model_id, WEIGHTS_NAME, **hub_kwargs)
        load_weights(model, weights_file, source=model_id)
        return model.to(map_location).eval()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# -- config validation ------------------------------------------------------------------

_INIT_PARAMETERS = {
    name: p for name, p in inspect.signature(UNet.__init__).parameters.items() if name != "self"
}
_TYPE_HINTS = typing.get_type_hints(UNet.__init__)


def _type_ok(value: Any, hint: Any) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check the constructor arguments' types and ranges; raise ``ConfigError`` naming
    the first bad one. Returns the config with numbers normalised."""
    for name, value in config.items():
        hint = _TYPE_HINTS[name]
        if not _type_ok(value, hint):
            raise ConfigError(
                f"{name} must be of type {getattr(hint, '__name__', hint)}, "
                f"got {value!r} ({type(value).__name__})"
            )
    for name in ("n_channels", "n_classes", "base_channels"):
        if config[name] < 1:
            raise ConfigError(f"{name} must be a positive integer, got {config[name]}")
    if len(config["labels"]) != config["n_classes"]:
        raise ConfigError(
            f"labels must name each of the {config['n_classes']} classes, got {config['labels']}"
        )
    if config["input_scaling"] not in INPUT_SCALINGS:
        raise ConfigError(
            f"input_scaling must be one of {INPUT_SCALINGS}, got {config['input_scaling']!r}"
        )
    if not 0.0 < config["threshold"] < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {config['threshold']}")
    return {**config, "threshold": float(config["threshold"])}


def check_saved_config(config: dict[str, Any], source: str) -> None:
    """Check a ``config.json`` read from ``source`` before building a model from it."""
    library = config.get("library_name")
    if library is not None and library != LIBRARY_NAME:
        raise ModelLoadError(
            f"{source}: config.json is for library {library!r}, not {LIBRARY_NAME}; "
            "load it with that library instead"
        )
    fmt = config.get("format", CONFIG_FORMAT)
    if not isinstance(fmt, int) or fmt > CONFIG_FORMAT:
        raise ModelLoadError(
            f"{source}: config.json has format {fmt!r}, newer than this unet-hub reads "
            f"({CONFIG_FORMAT}); upgrade unet-hub (pip install -U unet-hub)"
        )
    unknown = sorted(set(config) - set(_INIT_PARAMETERS) - set(_CONFIG_EXTRA_KEYS))
    if library is None and (unknown or not set(config) & set(_INIT_PARAMETERS)):
        # Without the library tag and with foreign keys, it was written by something else.
        keys = ", ".join(sorted(config)[:5]) or "none"
        raise ModelLoadError(
            f"{source}: config.json is not a unet-hub config (keys: {keys}); "
            "this model is for another library"
        )
    if unknown:
        raise ModelLoadError(f"{source}: config.json has unknown keys {unknown}")
    missing = [name for name in ("n_channels", "n_classes", "base_channels") if name not in config]
    if missing:
        raise ModelLoadError(f"{source}: config.json lacks the keys {missing}")
    try:
        validate_config({k: v for k, v in config.items() if k in _INIT_PARAMETERS})
    except ConfigError as e:
        raise ModelLoadError(f"{source}: config.json is invalid: {e}") from None


# -- weights ----------------------------------------------------------------------------
