"""Segmenting many images at once: finding the inputs, naming the outputs, the run.

``find_images`` expands what a user names (files, folders, globs) into images and the
names to mirror in the output folder; ``plan_jobs`` turns them into output paths and
refuses an output folder that would overwrite an input; ``run_batch`` segments one image
at a time, so memory stays flat however long the list (only the per-object table grows,
and it goes to disk row by row), and carries on past a bad file.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from unet_hub.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, read_image
from unet_hub.data.mask_values import mask_to_write
from unet_hub.errors import UNetHubError
from unet_hub.files import LABELS_SUFFIX, OBJECTS_NAME
from unet_hub.infer.instances import (
    InstanceOptions,
    Instances,
    instances_from_probabilities,
    write_labels,
    write_table,
)
from unet_hub.infer.runners import Runner
from unet_hub.infer.segment import mask_from_probabilities, segment
from unet_hub.model.unet import UNet


@dataclass(frozen=True)
class Found:
    """An input image and the name it has below what the user named (mirrored in --out)."""

    path: Path
    name: PurePosixPath


@dataclass(frozen=True)
class Job:
    """One image to segment and where its outputs go."""

    source: Path
    name: str  # as written in messages and the object table: relative, '/'-separated
    mask: Path
    labels: Path


@dataclass
class ImageResult:
    """One segmented image: the pixels read, the probabilities, the mask and the objects."""

    image: np.ndarray
    probabilities: np.ndarray
    mask: np.ndarray
    instances: Instances | None = None


@dataclass
class Outcome:
    """What became of one job: ``error`` is None when its outputs were written."""

    job: Job
    error: Exception | None = None
    objects: int | None = None
    #: The image's arrays, for a caller that shows them; drop it to keep memory flat.
    result: ImageResult | None = None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_in(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """The image files in a folder (and its sub-folders), sorted; hidden files and
    folders are left out, and so is ``exclude`` (the output folder) below ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        keep = [d for d in dirs if not d.startswith(".") and (here / d).resolve() != exclude]
        dirs[:] = sorted(keep) if recursive else []
        found += [here / f for f in files if _is_image(here / f)]
    return sorted(found)


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without wildcards."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def find_images(
    paths: Sequence[str | Path], *, recursive: bool = False, exclude: str | Path | None = None
) -> tuple[list[Found], list[tuple[str, str]]]:
    """The images that files, folders and glob patterns name, and a problem for each one
    that names none.

    A file is taken as it is (a bad one is reported when read) and keeps its own name; a
    folder gives its image files (``IMAGE_EXTENSIONS``, not hidden), with ``recursive``
    also those of its sub-folders, named relative to it; a glob gives the images it
    matches (``**`` spans folders with ``recursive``), named relative to its fixed part.
    Files under ``exclude`` (the output folder) are skipped in folders and globs.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[Found] = []
    problems: list[tuple[str, str]] = []
    for arg in map(str, paths):
        path = Path(arg)
        if path.is_file():
            found.append(Found(path, PurePosixPath(path.name)))
            continue
        if path.is_dir():
            images = [
                Found(p, PurePosixPath(p.relative_to(path).as_posix()))
                for p in _images_in(path, recursive, skip)
            ]
            hint = "" if recursive else " (--recursive looks in sub-folders too)"
            empty = f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder{hint}"
        elif glob.has_magic(arg):
            base = _glob_base(arg)
            images = []
            for match in map(Path, sorted(glob.glob(arg, recursive=recursive))):
                if match.is_dir():
                    inner = _images_in(match, recursive, skip)
                else:
                    inner = [match] if _is_image(match) and not _under(match, skip, base) else []
                images += [Found(p, PurePosixPath(p.relative_to(base).as_posix())) for p in inner]
            empty = "no image files match this pattern"
        else:
            problems.append((arg, "no such file or folder"))
            continue
        if not images:
            problems.append((arg, empty))
        found += images
    return found, problems


def _under(path: Path, folder: Path | None, base: Path) -> bool:
    """Whether ``path`` is in ``folder``, itself below ``base`` (not ``base`` itself)."""
    if folder is None or folder == base.resolve():
        return False
    return folder in path.resolve().parents and base.resolve() in folder.parents


def plan_jobs(found: Sequence[Found], out: str | Path) -> list[Job]:
    """Output paths in ``out`` for each image: ``<name>.png`` for the mask and
    ``<name>_labels.png`` for the objects, mirroring sub-folders. Two images of the same
    name (``a.png``, ``a.jpg``) keep their extension in it (``a_png.png``, ``a_jpg.png``);
    an image named twice is segmented once. Raises ``UNetHubError`` when an output would
    overwrite an input image."""
    out = Path(out)
    unique: dict[Path, Found] = {}
    for f in found:
        unique.setdefault(f.path.resolve(), f)
    stems = [f.name.with_suffix("") for f in unique.values()]
    taken = Counter(stems)
    jobs = []
    for f, stem in zip(unique.values(), stems, strict=True):
        if taken[stem] > 1:
            stem = stem.with_name(f"{stem.name}_{f.name.suffix.lstrip('.').lower()}")
        target = out / stem
        jobs.append(
            Job(
                source=f.path,
                name=f.name.as_posix(),
                mask=target.with_name(f"{target.name}.png"),
                labels=target.with_name(f"{target.name}{LABELS_SUFFIX}.png"),
            )
        )
    _refuse_overwrites(jobs, out)
    return jobs


def _refuse_overwrites(jobs: Sequence[Job], out: Path) -> None:
    """Raise if any output would replace an input image, or two outputs share a path."""
    inputs = {job.source.resolve(): job.source for job in jobs}
    outputs = [(out / OBJECTS_NAME, None)]
    outputs += [(p, job) for job in jobs for p in (job.mask, job.labels)]
    seen: dict[Path, Path] = {}
    for output, _ in outputs:
        resolved = output.resolve()
        if resolved in inputs:
            raise UNetHubError(
                f"--out {out}: writing {output} would overwrite the input image "
                f"{inputs[resolved]}; choose another --out folder"
            )
        if resolved in seen:
            raise UNetHubError(
                f"--out {out}: two outputs would be written to {output}; rename one of the "
                "input images"
            )
        seen[resolved] = output


def segment_file(
    model: UNet | Runner,
    path: str | Path,
    *,
    name: str = "",
    threshold: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    instances: InstanceOptions | None = None,
    backend: str = "auto",
) -> ImageResult:
    """Read one image (refusing more than ``max_pixels``), segment it and, with
    ``instances``, find its objects (``label_instances``; ``name`` fills the table's
    ``image`` column)."""
    threshold = model.config["threshold"] if threshold is None else threshold
    image = read_image(path, max_pixels=max_pixels)
    probabilities = segment(model, image, backend=backend)
    mask = mask_from_probabilities(probabilities, threshold)
    objects = None
    if instances is not None:
        objects = instances_from_probabilities(
            model,
            probabilities,
            image,
            watershed=instances.watershed,
            min_size=instances.min_size,
            threshold=threshold,
            name=name,
        )
    return ImageResult(image, probabilities, mask, objects)


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Write a mask PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask.ndim == 3:  # RGB colours; OpenCV writes BGR
        mask = cv2.cvtColor(mask, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), mask):
        raise UNetHubError(f"{path}: could not write the mask; check the folder")
    return path


def run_batch(
    model: UNet | Runner,
    jobs: Sequence[Job],
    out: str | Path,
    *,
    threshold: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    instances: InstanceOptions | None = None,
    backend: str = "auto",
    mask_format: str = "values",
) -> Iterator[Outcome]:
    """Segment each job's image in turn and write its mask (and, with ``instances``, its
    label image, and its rows of ``out/objects.csv``); yield one ``Outcome`` per image.

    A file that cannot be read or segmented is yielded with its error and the run goes
    on; only one image's arrays are alive at a time.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = (out / OBJECTS_NAME).open("w", newline="") if instances else nullcontext()
    with table as csv_file:
        if csv_file is not None:
            write_table([], csv_file)  # the header, even if no image succeeds
        for job in jobs:
            try:
                result = segment_file(
                    model,
                    job.source,
                    name=job.name,
                    threshold=threshold,
                    max_pixels=max_pixels,
                    instances=instances,
                    backend=backend,
                )
                config = model.config
                drawn = mask_to_write(
                    result.mask, config.n_classes, config.mask_values, mask_format
                )
                write_mask(job.mask, drawn)
                if result.instances is not None:
                    write_labels(job.labels, result.instances.labels)
                    write_table(result.instances.table, csv_file, header=False)
                    csv_file.flush()
            except Exception as error:  # noqa: BLE001 - a bad file must not stop the run
                yield Outcome(job, error=error)
                continue
            objects = None if result.instances is None else result.instances.count
            yield Outcome(job, objects=objects, result=result)
