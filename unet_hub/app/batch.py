"""The web app's "many images at once" section: several images or a zip in, a gallery of
objects, the object count and one zip of every mask, label image and the object table out.

``add_batch_section`` adds it to the Blocks being built (one line in ``webapp.build_app``)
with the API endpoint ``/segment_batch``. The work is ``unet_hub.infer.batch.run_batch``,
the same run as ``unet-hub predict --instances``.

What a request may hold is bounded before anything is decoded:

- only files that Gradio itself uploaded into its upload folder are read (Gradio's
  preprocessing stays on, so a request cannot name another file of the server);
- at most ``MAX_BATCH_IMAGES`` images per request, each within the app's pixel limit
  (``read_image``'s ``max_pixels``, from the header);
- a zip's members are read, never extracted by name: images get fresh names in a private
  folder (their names only label the results, cleaned of ``..`` and absolute parts), and
  the declared uncompressed total must stay under ``MAX_ZIP_BYTES``, which the reading
  also enforces in case the header lies (zip bombs).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import gradio as gr
from gradio.utils import get_upload_folder

from unet_hub.data.images import IMAGE_EXTENSIONS
from unet_hub.errors import UNetHubError
from unet_hub.files import OBJECTS_NAME
from unet_hub.infer.batch import Found, Outcome, plan_jobs, run_batch
from unet_hub.infer.instances import InstanceOptions
from unet_hub.infer.visualize import display_image, instance_overlay
from unet_hub.model.unet import UNet

log = logging.getLogger(__name__)

#: Images per request (files plus zip members); override: UNET_MAX_BATCH_IMAGES.
MAX_BATCH_IMAGES = int(os.environ.get("UNET_MAX_BATCH_IMAGES", 100))
#: Total uncompressed size of the images in one zip; override: UNET_MAX_ZIP_BYTES.
MAX_ZIP_BYTES = int(os.environ.get("UNET_MAX_ZIP_BYTES", 1_000_000_000))
#: Gallery pictures are shrunk to this many pixels a side (the zip keeps full size).
THUMBNAIL_SIDE = 512
#: Result folders kept for download; older ones are removed as new runs finish.
KEEP_RESULTS = 8
RESULTS_NAME = "segmentations.zip"

_results: deque[Path] = deque()


@dataclass
class Uploads:
    """The images of one request and what was left out."""

    found: list[Found] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _uploaded_path(path: str | Path) -> Path:
    """The path of a file in Gradio's upload folder; refuses any other."""
    resolved = Path(path).resolve()
    if Path(get_upload_folder()).resolve() not in resolved.parents:
        raise gr.Error("Only files uploaded to this app can be segmented.")
    return resolved


def _clean_name(member: str) -> PurePosixPath | None:
    """A zip member's name as a safe relative name, or None for what is not an image
    (folders, hidden files, macOS resource forks)."""
    parts = [
        p for p in PurePosixPath(member.replace("\\", "/")).parts if p not in ("", ".", "..", "/")
    ]
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    name = PurePosixPath(*parts)
    return name if name.suffix.lower() in IMAGE_EXTENSIONS else None


def _read_zip(path: Path, folder: Path, uploads: Uploads, room: int) -> None:
    """Add a zip's images to ``uploads``, written under fresh names in ``folder``."""
    label = path.name
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise gr.Error(f"{label}: not a readable zip archive.") from None
    with archive:
        members = [(m, _clean_name(m.filename)) for m in archive.infolist() if not m.is_dir()]
        images = [(m, name) for m, name in members if name is not None]
        uploads.skipped += [f"{label}/{m.filename}" for m, name in members if name is None]
        if len(images) > room:
            raise gr.Error(f"{label}: too many images; at most {MAX_BATCH_IMAGES} per run.")
        declared = sum(m.file_size for m, _ in images)
        if declared > MAX_ZIP_BYTES:
            raise gr.Error(
                f"{label}: {declared:,} bytes uncompressed is more than the limit of "
                f"{MAX_ZIP_BYTES:,}; send fewer images at a time."
            )
        budget = MAX_ZIP_BYTES
        for i, (member, name) in enumerate(images):
            target = folder / f"{len(uploads.found) + i:05d}{name.suffix.lower()}"
            budget -= _copy_member(archive, member, target, budget, label)
            uploads.found.append(Found(target, PurePosixPath(path.stem) / name))


def _copy_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int, label: str
) -> int:
    """Copy one member to ``target``, stopping at ``budget`` bytes; returns its size."""
    written = 0
    with archive.open(member) as source, target.open("wb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > budget:
                raise gr.Error(f"{label}: the images are larger than declared; not read.")
            out.write(chunk)
    return written


def collect_uploads(paths: list[str], folder: Path) -> Uploads:
    """The images of the uploaded files: images as they are, zips opened (their images
    copied into ``folder`` under fresh names). Raises ``gr.Error`` past the limits."""
    uploads = Uploads()
    for raw in paths:
        path = _uploaded_path(raw)
        if zipfile.is_zipfile(path):
            _read_zip(path, folder, uploads, MAX_BATCH_IMAGES - len(uploads.found))
        else:  # any other file is read as an image, and reported if it is none
            uploads.found.append(Found(path, PurePosixPath(path.name)))
        if len(uploads.found) > MAX_BATCH_IMAGES:
            raise gr.Error(f"Too many images; at most {MAX_BATCH_IMAGES} per run.")
    return uploads


def _thumbnail(model: UNet, outcome: Outcome, folder: Path) -> str:
    """The image with its objects coloured, at most ``THUMBNAIL_SIDE`` px a side, as a PNG."""
    result = outcome.result
    picture = display_image(result.image, model.n_channels, model.config["input_scaling"])
    rgb = instance_overlay(picture, result.instances.labels)
    scale = THUMBNAIL_SIDE / max(rgb.shape[:2])
    if scale < 1:
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    path = folder / f"{len(list(folder.iterdir())):05d}.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def _zip_folder(folder: Path, target: Path) -> Path:
    """Zip every file below ``folder`` under its relative name."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def _new_results_folder() -> Path:
    """A private folder for one run's results; the oldest beyond ``KEEP_RESULTS`` go."""
    folder = Path(tempfile.mkdtemp(prefix="unet-hub-batch-", dir=get_upload_folder()))
    _results.append(folder)
    while len(_results) > KEEP_RESULTS:
        shutil.rmtree(_results.popleft(), ignore_errors=True)
    return folder


def _message(error: Exception, outcome: Outcome) -> str:
    """A failed image's one-line reason, naming the file as the user named it."""
    if not isinstance(error, UNetHubError):
        log.error("segmentation failed for %s: %r", outcome.job.source, error)
        return f"{outcome.job.name}: segmentation failed; try another file."
    return str(error).replace(str(outcome.job.source), outcome.job.name)


def segment_uploads(
    model: UNet,
    paths: list[str] | None,
    options: InstanceOptions,
    max_pixels: int | None,
    progress: Any = None,
) -> tuple[list[tuple[str, str]], str, str | None, str | None]:
    """Segment the uploaded images (and zips): the gallery (picture, caption), a Markdown
    summary, the results zip and the object table."""
    if not paths:
        raise gr.Error("Add images, or a zip of images, first.")
    folder = _new_results_folder()
    inputs, out, pictures = folder / "in", folder / "results", folder / "gallery"
    for f in (inputs, out, pictures):
        f.mkdir()
    uploads = collect_uploads(paths, inputs)
    if not uploads.found:
        raise gr.Error("No images found: send PNG, JPEG, TIFF or BMP files, or a zip of them.")
    try:
        jobs = plan_jobs(uploads.found, out)
    except UNetHubError:  # its message names server paths
        raise gr.Error("Two images would give results of the same name; rename one.") from None
    run = run_batch(model, jobs, out, max_pixels=max_pixels, instances=options)
    if progress is not None:
        run = progress.tqdm(run, total=len(jobs), desc="Segmenting", unit="images")
    gallery, failed, objects = [], [], 0
    for outcome in run:
        if outcome.error is not None:
            failed.append(_message(outcome.error, outcome))
            continue
        objects += outcome.objects
        caption = f"{outcome.job.name}: {outcome.objects} objects"
        gallery.append((_thumbnail(model, outcome, pictures), caption))
    shutil.rmtree(inputs, ignore_errors=True)  # zip members; the uploads are Gradio's
    summary = _summary(len(gallery), objects, failed, uploads.skipped, options)
    if not gallery:
        return [], summary, None, None
    archive = _zip_folder(out, folder / RESULTS_NAME)
    return gallery, summary, str(archive), str(out / OBJECTS_NAME)


def _summary(
    done: int, objects: int, failed: list[str], skipped: list[str], options: InstanceOptions
) -> str:
    """The run in words: the object count first."""
    images = f"{done} image{'s' if done != 1 else ''}"
    lines = [f"### {objects} objects in {images}", f"Objects by {options.describe()}."]
    if failed:
        lines.append(f"**{len(failed)} not segmented:**\n" + "\n".join(f"- {m}" for m in failed))
    if skipped:
        lines.append(
            f"Skipped (not images): {', '.join(skipped[:10])}" + (" …" if len(skipped) > 10 else "")
        )
    return "\n\n".join(lines)


def add_batch_section(model: UNet, *, max_pixels: int | None) -> None:
    """Add the "many images at once" section (and ``/segment_batch``) to the Blocks being
    built; ``max_pixels`` is the app's limit per image."""

    def segment_batch(files, watershed, min_size, progress=gr.Progress()):  # noqa: B008
        """Segment several images (or zips of images): the gallery, the summary, a zip of
        the masks, label images and object table, and the object table (CSV)."""
        options = InstanceOptions(watershed=bool(watershed), min_size=max(int(min_size or 0), 0))
        return segment_uploads(model, files, options, max_pixels, progress)

    with gr.Accordion("Many images at once: count and measure objects", open=True):
        gr.Markdown(
            "Add several images, or a zip of them, and press **Segment all**. Each image "
            "is shown with its objects coloured; the download holds every mask, a 16-bit "
            f"label image per image (0 = background) and `{OBJECTS_NAME}` (one row per "
            f"object: area, centroid, box, mean intensity and probability). At most "
            f"{MAX_BATCH_IMAGES} images per run."
        )
        with gr.Row():
            with gr.Column():
                files = gr.File(
                    label="Images or zip",
                    file_count="multiple",
                    file_types=[*IMAGE_EXTENSIONS, ".zip"],
                    elem_id="batch-files",
                )
                watershed = gr.Checkbox(
                    label="Split touching objects (watershed)",
                    value=model.config.watershed,  # as the model recommends
                    elem_id="batch-watershed",
                )
                min_size = gr.Number(
                    label="Minimum object size (pixels)",
                    value=model.config.min_size,
                    minimum=0,
                    precision=0,
                    elem_id="batch-min-size",
                )
                button = gr.Button("Segment all", variant="primary", elem_id="batch-button")
            with gr.Column():
                summary = gr.Markdown(label="Summary", elem_id="batch-summary")
                gallery = gr.Gallery(
                    label="Objects", columns=3, format="png", elem_id="batch-gallery"
                )
                archive = gr.File(
                    label="Download: masks, labels and objects (zip)", elem_id="batch-zip"
                )
                table = gr.File(label=f"Objects ({OBJECTS_NAME})", elem_id="batch-csv")
    button.click(
        segment_batch,
        [files, watershed, min_size],
        [gallery, summary, archive, table],
        api_name="segment_batch",
        concurrency_id="network",  # the single-image runs' queue (webapp.NETWORK)
    )
