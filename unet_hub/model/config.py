"""The model's configuration: its fields, defaults, help texts, validation and
``config.json``, in one place.

``UNetConfig`` is what a model *is*: everything a caller needs to use a saved model
(input channels, pixel scaling, classes and their names, the recommended threshold).
``UNet`` is built from one, ``config.json`` is written from it and read back through it,
and the training command line takes its options (and their help) from its fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from unet_hub.errors import ConfigError, ModelLoadError

#: How pixels become network inputs: by the maximum of their dtype (255 for 8-bit, 65535
#: for 16-bit), by each image's own minimum and maximum, by each image's mean and standard
#: deviation (zscore), or clipped to each image's 0.5 and 99.5 percentiles and scaled to
#: [0, 1] (percentile). The exact formulas: ``unet_hub.data.images.scale_to_unit``.
INPUT_SCALINGS = ("dtype", "minmax", "zscore", "percentile")
#: The normalisation layer after each convolution: BatchNorm (the seed architecture),
#: InstanceNorm (per image and channel, affine, no running statistics) or GroupNorm.
NORMS = ("batch", "instance", "group")
#: Version of the ``config.json`` layout; a saved model with a newer one is refused.
CONFIG_FORMAT = 1
LIBRARY_NAME = "unet-hub"
MODEL_TYPE = "unet"
#: Keys that ``config.json`` holds besides the config's fields.
SAVED_EXTRA_KEYS = ("format", "library_name", "model_type")
#: The fields that say how to use the network, not what it is: they may change after
#: training (``UNet.update_config``) and do not change an exported graph.
USAGE_FIELDS = ("labels", "input_scaling", "threshold", "watershed", "min_size")
#: Fields added after format 1: ``config.json`` holds them only when they differ from
#: their default, so a model that does not use them still loads in older versions.
ADDED_FIELDS = ("mask_values", "watershed", "min_size", "norm")
#: The keys a ``config.json`` must have (the others have defaults).
REQUIRED_KEYS = ("n_channels", "n_classes", "base_channels")


def _field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's configuration; invalid values raise ``ConfigError`` naming the field.

    Item access (``config["labels"]``) gives the JSON form that ``config.json`` holds
    (lists); attributes give the typed values (``config.labels`` is a tuple). A config
    never changes: ``config.replace(threshold=0.6)`` makes a new, validated one.
    """

    n_channels: int = _field(1, "input channels: 1 = grayscale, 3 = RGB")
    n_classes: int = _field(
        1,
        "output classes: 1 = binary mask (0 = background, the other value foreground; "
        "soft edges are thresholded at half), more = masks hold class ids",
    )
    bilinear: bool = _field(True, "bilinear up-sampling (else transposed convolutions)")
    base_channels: int = _field(
        64,
        "width of the first U-Net level; the levels are 1, 2, 4, 8 and 8 times it "
        "(64 = the classic network)",
    )
    labels: tuple[str, ...] | None = _field(
        None,
        "name of each class, e.g. 'cell interior' (default: foreground, or class 0, class 1, ...)",
    )
    input_scaling: str = _field(
        "dtype",
        "how each image's pixels are scaled for the network: dtype (by 255 or 65535), "
        "minmax (by its own range), zscore (by its own mean and standard deviation) or "
        "percentile (clipped to its own 0.5-99.5 percentiles, then to [0, 1])",
    )
    norm: str = _field(
        "batch",
        "normalisation layer after each convolution: batch (BatchNorm, the seed "
        "architecture), instance (InstanceNorm: per image, no running statistics) or group "
        "(GroupNorm, 8 channels per group)",
    )
    threshold: float = _field(0.5, "recommended foreground probability threshold")
    mask_values: tuple[tuple[int, ...], ...] | None = _field(
        None,
        "several classes: the mask value of each class, in class order, as grey levels "
        "(0 127 255) or R,G,B colours (0,0,0 255,0,0 0,255,0); default: found in the masks "
        "(class ids 0, 1, 2... need none)",
    )
    watershed: bool = _field(
        False,
        "objects: split touching objects with a watershed on the probabilities (else "
        "connected components); the app and `unet-hub predict --instances` use it by default",
    )
    min_size: int = _field(
        0, "objects: drop objects of fewer pixels than this (the app and predict's default)"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("labels", "mask_values") and isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
                object.__setattr__(self, f.name, value)
            if not _type_ok(value, _HINTS[f.name]):
                raise ConfigError(
                    f"{f.name} must be of type {_type_name(_HINTS[f.name])}, "
                    f"got {value!r} ({type(value).__name__})"
                )
        if self.labels is None:
            default = ("foreground",) if self.n_classes == 1 else None
            labels = default or tuple(f"class {i}" for i in range(self.n_classes))
            object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "threshold", float(self.threshold))
        self._check_ranges()

    def _check_ranges(self) -> None:
        for name in ("n_channels", "n_classes", "base_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if len(self.labels) != self.n_classes:
            raise ConfigError(
                f"labels must name each of the {self.n_classes} classes, got {list(self.labels)}"
            )
        if self.input_scaling not in INPUT_SCALINGS:
            raise ConfigError(
                f"input_scaling must be one of {INPUT_SCALINGS}, got {self.input_scaling!r}"
            )
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not (math.isfinite(self.threshold) and 0.0 < self.threshold < 1.0):
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.min_size < 0:
            raise ConfigError(f"min_size must be 0 or more pixels, got {self.min_size}")
        if self.mask_values is not None:
            self._check_mask_values()

    def _check_mask_values(self) -> None:
        values = self.mask_values
        if self.n_classes == 1:
            raise ConfigError(
                "mask_values are for several classes; a one-class mask is 0 = background, "
                "any other value = foreground"
            )
        if len(values) != self.n_classes:
            raise ConfigError(
                f"mask_values must give one value for each of the {self.n_classes} classes, "
                f"got {len(values)}"
            )
        widths = {len(v) for v in values}
        if widths not in ({1}, {3}) or not all(0 <= x <= 65535 for v in values for x in v):
            raise ConfigError(
                "mask_values must all be grey levels (one number) or all R,G,B colours, "
                f"each 0-65535, got {[list(v) for v in values]}"
            )
        if len(set(values)) != len(values):
            raise ConfigError(f"mask_values must differ between classes, got {list(values)}")

    # -- views -------------------------------------------------------------------------

    @property
    def recommends_objects(self) -> bool:
        """Whether this one-class model recommends post-processing its objects (a
        watershed or a minimum size), so that its scores include those of the objects."""
        return self.n_classes == 1 and (self.watershed or self.min_size > 0)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (labels as a list)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_saved_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: the fields plus the format, library and model type."""
        extras = (CONFIG_FORMAT, LIBRARY_NAME, MODEL_TYPE)
        fields = {
            k: v
            for k, v in self.to_dict().items()
            if k not in ADDED_FIELDS or v != field_default(k)
        }
        return {**fields, **dict(zip(SAVED_EXTRA_KEYS, extras, strict=True))}

    def replace(self, **changes: Any) -> UNetConfig:
        """A new config with ``changes``, validated like any other."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown model config fields {unknown}")
        return dataclasses.replace(self, **changes)

    def __getitem__(self, name: str) -> Any:
        if name not in field_names():
            raise KeyError(name)
        return _jsonable(getattr(self, name))

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in field_names() else default

    def keys(self) -> Iterator[str]:
        return iter(field_names())

    # -- config.json -------------------------------------------------------------------

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any], source: str) -> UNetConfig:
        """The config in a ``config.json`` read from ``source`` (a folder or repo id),
        checked strictly: written by unet-hub, a format this version reads, no unknown or
        missing keys, valid values. Every failure is a ``ModelLoadError`` naming
        ``source``."""
        check_saved_config(saved, source)
        try:
            return cls(**{k: v for k, v in saved.items() if k in field_names()})
        except ConfigError as e:
            raise ModelLoadError(f"{source}: config.json is invalid: {e}") from None


def field_names() -> tuple[str, ...]:
    """The config's fields, in order."""
    return _FIELD_NAMES


def field_help(name: str) -> str:
    """The help text of one field (the command line shows it)."""
    return _FIELDS[name].metadata["help"]


def field_default(name: str) -> Any:
    return _FIELDS[name].default


def check_saved_config(saved: Mapping[str, Any], source: str) -> None:
    """Refuse a ``config.json`` from ``source`` that unet-hub did not write, that is
    newer than this version reads, or that has unknown or missing keys."""
    library = saved.get("library_name")
    if library is not None and library != LIBRARY_NAME:
        raise ModelLoadError(
            f"{source}: config.json is for library {library!r}, not {LIBRARY_NAME}; "
            "load it with that library instead"
        )
    fmt = saved.get("format", CONFIG_FORMAT)
    if not isinstance(fmt, int) or fmt > CONFIG_FORMAT:
        raise ModelLoadError(
            f"{source}: config.json has format {fmt!r}, newer than this unet-hub reads "
            f"({CONFIG_FORMAT}); upgrade unet-hub (pip install -U unet-hub)"
        )
    unknown = sorted(set(saved) - set(field_names()) - set(SAVED_EXTRA_KEYS))
    if library is None and (unknown or not set(saved) & set(field_names())):
        # Without the library tag and with foreign keys, it was written by something else.
        keys = ", ".join(sorted(saved)[:5]) or "none"
        raise ModelLoadError(
            f"{source}: config.json is not a unet-hub config (keys: {keys}); "
            "this model is for another library"
        )
    if unknown:
        raise ModelLoadError(f"{source}: config.json has unknown keys {unknown}")
    missing = [name for name in REQUIRED_KEYS if name not in saved]
    if missing:
        raise ModelLoadError(f"{source}: config.json lacks the keys {missing}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _type_ok(value: Any, hint: Any) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


_HINTS = typing.get_type_hints(UNetConfig)
_FIELDS = {f.name: f for f in dataclasses.fields(UNetConfig)}
_FIELD_NAMES = tuple(_FIELDS)
