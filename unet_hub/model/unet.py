"""The U-Net assembled from its parts, with Hugging Face Hub save/load.

``UNet`` subclasses ``huggingface_hub.PyTorchModelHubMixin``: ``save_pretrained`` writes
``config.json``, ``model.safetensors`` and a model card, and ``from_pretrained`` takes a
local folder or a Hub repo id. Everything a caller needs to use a saved model (input
channels, pixel scaling, classes, what the foreground means, the recommended threshold)
is a constructor argument, so it travels in ``config.json``.
"""

from __future__ import annotations

import json
import os
import re
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
from unet_hub.model.config import (
    LIBRARY_NAME,
    SAVED_EXTRA_KEYS,
    USAGE_FIELDS,
    UNetConfig,
    field_names,
)
from unet_hub.model.download import (
    HUB_ERRORS,
    fail_fast_if_unreachable,
    fetch,
    hub_error_message,
    looks_like_a_path,
)
from unet_hub.model.parts import DoubleConv, Down, OutConv, Up
from unet_hub.model.weights import count_parameters, load_weights

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
    """U-Net (Ronneberger et al., 2015) with padded convolutions and BatchNorm (or the
    norm layer ``config.norm`` names).

    Built from a ``UNetConfig`` (``UNet(config)``) or from its fields as keywords
    (``UNet(n_channels=3, base_channels=32)``); see ``UNetConfig`` for each field. The
    config travels in ``config.json``; ``model.config`` is read-only, and what may change
    after training (the recommended threshold, the class names, the pixel scaling) is
    changed with ``model.update_config(...)``, validated.
    """

    def __init__(self, config: UNetConfig | None = None, **fields: Any):
        super().__init__()
        if config is not None and not isinstance(config, UNetConfig):
            raise ConfigError(
                f"UNet takes a UNetConfig or the config's fields as keywords, got {config!r}"
            )
        if config is not None and fields:
            config = config.replace(**fields)
        self._config = config if config is not None else UNetConfig(**_known_fields(fields))
        b, bilinear, norm = self._config.base_channels, self._config.bilinear, self._config.norm
        self.inc = DoubleConv(self._config.n_channels, b, norm)
        self.down1 = Down(b, 2 * b, norm)
        self.down2 = Down(2 * b, 4 * b, norm)
        self.down3 = Down(4 * b, 8 * b, norm)
        self.down4 = Down(8 * b, 8 * b, norm)
        self.up1 = Up(16 * b, 4 * b, bilinear, norm)
        self.up2 = Up(8 * b, 2 * b, bilinear, norm)
        self.up3 = Up(4 * b, b, bilinear, norm)
        self.up4 = Up(2 * b, b, bilinear, norm)
        self.outc = OutConv(b, self._config.n_classes)

    @property
    def config(self) -> UNetConfig:
        """The model's configuration (frozen; see ``update_config``)."""
        return self._config

    def update_config(self, **changes: Any) -> UNetConfig:
        """Change what may change without touching the weights (``USAGE_FIELDS``: the
        recommended threshold, the class names, the pixel scaling), validated."""
        fixed = sorted(set(changes) - set(USAGE_FIELDS))
        if fixed:
            raise ConfigError(
                f"{', '.join(fixed)} shape(s) the network and cannot change after it is "
                f"built; only {', '.join(USAGE_FIELDS)} can"
            )
        self._config = self._config.replace(**changes)
        return self._config

    @property
    def n_channels(self) -> int:
        return self._config.n_channels

    @property
    def n_classes(self) -> int:
        return self._config.n_classes

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
        config = self._config.to_saved_dict()
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Render ``model_card.md`` with this model's config and the training facts passed
        as ``model_card_kwargs``: ``metrics`` (name -> value), ``eval_dataset`` (the name
        of the data they were measured on), ``training`` (a dict), ``repo_id``,
        ``dataset_id`` (a Hub dataset, linked as ``datasets:``) and ``base_model`` (the
        Hub model it was fine-tuned from).

        Metrics measured on a named data set also go into the card's YAML ``model-index``,
        where the Hub and ``card_metrics`` read them.
        """
        card = super().generate_model_card(
            *args, config=self._config.to_dict(), n_parameters=count_parameters(self), **kwargs
        )
        metrics, dataset = kwargs.get("metrics"), kwargs.get("eval_dataset")
        dataset_id, base_model = kwargs.get("dataset_id"), kwargs.get("base_model")
        if dataset_id:
            card.data.datasets = [dataset_id]
        if base_model:
            card.data.base_model = base_model
        if metrics and dataset:
            card.data.model_name = kwargs.get("repo_id") or "unet"
            card.data.eval_results = [
                EvalResult(
                    task_type="image-segmentation",
                    dataset_type=dataset_id or _slug(dataset),
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
        saved = UNetConfig.from_saved(config, source=model_id)
        overrides = {k: v for k, v in model_kwargs.items() if k not in SAVED_EXTRA_KEYS}
        try:
            model = cls(saved.replace(**overrides))
        except ConfigError as e:
            raise ModelLoadError(f"{model_id}: {e}") from None
        weights_file = fetch(model_id, WEIGHTS_NAME, **hub_kwargs)
        load_weights(model, weights_file, source=model_id)
        return model.to(map_location).eval()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# -- weights ----------------------------------------------------------------------------


def _known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(field_names()))
    if unknown:
        raise ConfigError(
            f"unknown model config fields {unknown}; known: {', '.join(field_names())}"
        )
    return fields
