"""Objects, not only pixels: instance labels, a per-object table and the object count.

``label_instances`` turns a segmentation's probabilities into objects:

- **connected components** (the default): each 4-connected region of a class is one
  object, as the evaluation's Rand scores count cells;
- **watershed** (``watershed=True``): touching objects are split. Seeds are the
  high-confidence cores of the objects: the regional maxima of the distance transform
  of the foreground that stand ``seed_height`` px above their surroundings (one per
  convex blob, so two touching discs give two seeds). From the seeds the foreground is
  flooded over ``1 - probability``, so where objects meet the boundary follows the
  model's own dip in confidence (ties are broken by distance from the seeds).

``min_size`` drops objects of fewer pixels (specks). Objects are numbered 1, 2, ... in
raster order of their first pixel, 0 is background, and the table has one row per
object with ``TABLE_COLUMNS``. The parameters are explicit so that a model's recommended
post-processing can be passed straight through.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential
from skimage.segmentation import watershed as flood

from unet_hub.errors import UNetHubError
from unet_hub.infer.runners import Runner
from unet_hub.infer.segment import segment
from unet_hub.model.unet import UNet

#: The per-object table's columns, in order. Centroids and boxes are in pixels (row y,
#: column x); a box runs from (y0, x0) included to (y1, x1) excluded, as NumPy slices.
#: ``mean_intensity`` is the mean of the image's pixel values (over all its channels, in
#: the file's own units); ``mean_probability`` the mean probability of the object's class.
TABLE_COLUMNS = (
    "image",
    "id",
    "class",
    "class_name",
    "area",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "mean_intensity",
    "mean_probability",
)
#: How far (px) a distance-transform maximum must rise above the saddle to a neighbouring
#: one to seed an object of its own: lower splits more, higher merges more.
DEFAULT_SEED_HEIGHT = 2.0
#: A 16-bit label image holds at most this many objects.
MAX_LABEL = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class InstanceOptions:
    """How objects are made from a segmentation: ``label_instances``'s parameters."""

    watershed: bool = False
    min_size: int = 0

    def describe(self) -> str:
        """In words, for tables and pages."""
        method = "watershed" if self.watershed else "connected components"
        return method + (f", min size {self.min_size} px" if self.min_size else "")


@dataclass
class Instances:
    """Objects found in one image: the label image (0 = background, 1..count), the class
    of each object and the per-object table (rows of ``TABLE_COLUMNS``)."""

    labels: np.ndarray
    table: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        """The number of objects."""
        return len(self.table)


def label_instances(
    probabilities: np.ndarray,
    image: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    watershed: bool = False,
    min_size: int = 0,
    seed_height: float = DEFAULT_SEED_HEIGHT,
    class_names: Sequence[str] | None = None,
    name: str = "",
) -> Instances:
    """The objects of a segmentation: ``probabilities`` as ``segment`` returns them (H×W
    foreground probability for one class, classes×H×W for several; class 0 is then
    background). ``threshold`` applies to one class; several take the argmax.

    ``watershed`` splits touching objects (see the module doc), ``min_size`` drops
    objects of fewer pixels, ``image`` (H×W or H×W×C, optional) gives the table's
    ``mean_intensity``, ``class_names`` (a model's ``config["labels"]``) its
    ``class_name`` and ``name`` its ``image`` column.
    """
    if min_size < 0:
        raise ValueError(f"min_size must be 0 or more, got {min_size}")
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim == 2:
        classes = {1: (probabilities > threshold, probabilities)}
    else:
        winner = probabilities.argmax(axis=0)
        classes = {c: (winner == c, probabilities[c]) for c in range(1, len(probabilities))}
    labels = np.zeros(probabilities.shape[-2:], dtype=np.int32)
    class_of: list[int] = []  # class id of object i + 1
    for class_id, (foreground, probability) in classes.items():
        objects = _objects(foreground, probability, watershed, min_size, seed_height)
        n = int(objects.max(initial=0))
        labels[objects > 0] = objects[objects > 0] + len(class_of)
        class_of += [class_id] * n
    names = None
    if class_names:  # a one-class model's labels name its foreground only
        first = 1 if probabilities.ndim == 2 else 0
        names = {c: class_names[c - first] for c in classes if c - first < len(class_names)}
    table = object_table(labels, class_of, probabilities, image, names, name)
    return Instances(labels=labels, table=table)


def instances_from_probabilities(
    model: UNet | Runner,
    probabilities: np.ndarray,
    image: np.ndarray | None = None,
    *,
    watershed: bool = False,
    min_size: int = 0,
    threshold: float | None = None,
    name: str = "",
) -> Instances:
    """``label_instances`` with what the model knows: its recommended threshold (unless
    ``threshold`` is given) and its class names."""
    return label_instances(
        probabilities,
        image,
        threshold=model.config["threshold"] if threshold is None else threshold,
        watershed=watershed,
        min_size=min_size,
        class_names=model.config["labels"],
        name=name,
    )


def segment_objects(
    model: UNet | Runner,
    image: np.ndarray,
    *,
    watershed: bool = False,
    min_size: int = 0,
    threshold: float | None = None,
) -> Instances:
    """The objects of an image: ``segment`` it, then ``label_instances`` with the model's
    threshold and class names. ``.labels`` is the label image, ``.table`` the per-object
    rows, ``.count`` the number of objects."""
    probabilities = segment(model, image)
    return instances_from_probabilities(
        model, probabilities, image, watershed=watershed, min_size=min_size, threshold=threshold
    )


def _objects(
    foreground: np.ndarray,
    probability: np.ndarray,
    watershed: bool,
    min_size: int,
    seed_height: float,
) -> np.ndarray:
    """Objects 1..n of one class's boolean foreground."""
    if watershed and foreground.any():
        # float32: h_maxima sorts every pixel, and float64 doubles that cost for nothing
        distance = ndi.distance_transform_edt(foreground).astype(np.float32)
        # The cores: one seed per maximum of the distance that stands out by seed_height.
        seeds = label(h_maxima(distance, seed_height) > 0, connectivity=2)
        objects = flood(1.0 - probability, seeds, mask=foreground, connectivity=1)
        # A component without a seed (thinner than seed_height) keeps its own id.
        unseeded = label(foreground & (objects == 0), connectivity=1)
        objects = np.where(unseeded > 0, unseeded + objects.max(), objects)
    else:
        objects = label(foreground, connectivity=1)
    if min_size > 0:
        area = np.bincount(objects.ravel())
        small = area < min_size
        small[0] = False
        objects[small[objects]] = 0
    objects, _, _ = relabel_sequential(objects)
    return _raster_order(objects)


def _raster_order(objects: np.ndarray) -> np.ndarray:
    """Renumber objects 1..n in raster order of their first pixel, so ids do not depend on
    how the labelling happened to number them."""
    flat = objects.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    order = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int32)
    order[ids[keep][np.argsort(first[keep])]] = np.arange(1, keep.sum() + 1)
    return order[objects]


def object_table(
    labels: np.ndarray,
    class_of: Sequence[int],
    probabilities: np.ndarray,
    image: np.ndarray | None = None,
    class_names: dict[int, str] | None = None,
    name: str = "",
) -> list[dict]:
    """One row of ``TABLE_COLUMNS`` per object of ``labels`` (ids 1..len(class_of));
    ``class_names`` maps class ids to names (default: the id)."""
    n = len(class_of)
    if n == 0:
        return []
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    rows_, cols_ = np.indices(labels.shape)
    cy = np.bincount(flat, rows_.ravel(), minlength=n + 1)[1:] / area
    cx = np.bincount(flat, cols_.ravel(), minlength=n + 1)[1:] / area
    own = probabilities if probabilities.ndim == 2 else None
    prob_sum = np.zeros(n)
    for class_id in sorted(set(class_of)):
        p = own if own is not None else probabilities[class_id]
        ids = np.flatnonzero(np.asarray(class_of) == class_id) + 1
        sums = np.bincount(flat, p.ravel(), minlength=n + 1)
        prob_sum[ids - 1] = sums[ids]
    intensity = None
    if image is not None:
        values = np.asarray(image, dtype=np.float64)
        values = values.mean(axis=2) if values.ndim == 3 else values
        intensity = np.bincount(flat, values.ravel(), minlength=n + 1)[1:] / area
    boxes = ndi.find_objects(labels, max_label=n)
    table = []
    for i in range(n):
        box = boxes[i]
        class_id = int(class_of[i])
        table.append(
            {
                "image": name,
                "id": i + 1,
                "class": class_id,
                "class_name": (class_names or {}).get(class_id, str(class_id)),
                "area": int(area[i]),
                "centroid_y": round(float(cy[i]), 2),
                "centroid_x": round(float(cx[i]), 2),
                "bbox_y0": box[0].start,
                "bbox_x0": box[1].start,
                "bbox_y1": box[0].stop,
                "bbox_x1": box[1].stop,
                "mean_intensity": None if intensity is None else round(float(intensity[i]), 4),
                "mean_probability": round(float(prob_sum[i] / area[i]), 4),
            }
        )
    return table


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image as a 16-bit PNG (0 = background); refuses more than 65,535
    objects, which 16 bits cannot hold."""
    path = Path(path)
    top = int(labels.max(initial=0))
    if top > MAX_LABEL:
        raise UNetHubError(
            f"{path}: {top:,} objects do not fit a 16-bit label image (at most {MAX_LABEL:,}); "
            "raise --min-size or split the image"
        )
    if not cv2.imwrite(str(path), labels.astype(np.uint16)):
        raise UNetHubError(f"{path}: could not write the label image; check the folder")
    return path


def write_table(rows: Iterable[dict], file: IO[str], header: bool = True) -> None:
    """Write per-object rows as CSV (``TABLE_COLUMNS``) to an open text file."""
    writer = csv.DictWriter(file, fieldnames=TABLE_COLUMNS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
