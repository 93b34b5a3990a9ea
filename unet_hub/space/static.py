"""``unet-hub space build MODEL OUT --kind static``: a folder that is a complete static
Space, where the network runs in the visitor's browser.

The folder holds the page (``static/``: plain HTML, CSS and JavaScript, no build step),
the model as ONNX (float32; int8 too with ``int8=True``), onnxruntime-web and the TIFF
decoder (pinned, committed: ``vendor.py``), the example images, ``space.json`` (the
model's config, the tiling, the limits, the colours and the description the page shows)
and a README whose front matter makes it a static Space with the cross-origin isolation
headers that let WebAssembly use threads. The page's worker cuts images with
``static/geometry.js``, a port of ``unet_hub.infer.tiling``, so it segments as
``segment()`` does.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unet_hub import metric_names
from unet_hub.errors import UNetHubError
from unet_hub.files import BUNDLED_MODEL, EXAMPLES_DIR
from unet_hub.hub.cards import card_eval_dataset, card_metrics, load_model_card, without_paths
from unet_hub.infer.export import export_onnx
from unet_hub.infer.tiling import ALIGN, DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, round_up
from unet_hub.infer.visualize import ALPHA, PALETTE, colour_name, probability_map
from unet_hub.model.download import looks_like_a_path
from unet_hub.model.unet import UNet
from unet_hub.model.weights import count_parameters
from unet_hub.space.vendor import ORT_WEB_VERSION, check_vendored, vendored_files

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The page's own files and the small vendored decoders, copied as they are.
PAGE_FILES = ("index.html", "style.css", "app.js", "worker.js", "geometry.js")
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
SETTINGS_FILE = "space.json"
EXAMPLES_FOLDER = "examples"
README = "README.md"

#: Headers that give the page cross-origin isolation, so WebAssembly may use threads:
#: the keys a static Space's ``custom_headers`` accepts (Spaces config reference).
ISOLATION_HEADERS = {
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "cross-origin",
}
#: The page refuses larger images, as the Gradio app does (its UNET_MAX_PIXELS default)...
MAX_PIXELS = 25_000_000
#: ... and larger files (the Gradio app's max_file_size).
MAX_FILE_BYTES = 50_000_000


class SpaceBuildError(UNetHubError):
    """A Space folder could not be built from what was given."""


def is_hub_id(source: str | Path) -> bool:
    """True when ``source`` names a Hub repo rather than a local folder."""
    name = str(source)
    return not Path(source).exists() and "/" in name and not looks_like_a_path(name)


def model_label(source: str | Path) -> str:
    """How pages name the model: never a path of the machine that built the Space."""
    if Path(source).resolve() == BUNDLED_MODEL:
        return "the bundled ISBI 2012 model"
    return str(source) if is_hub_id(source) else Path(source).resolve().name


def prepare_out_dir(out_dir: str | Path, marker: str) -> Path:
    """An empty ``out_dir``, or one that an earlier build wrote (it holds ``marker``),
    emptied; anything else is refused so no user file is overwritten."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SpaceBuildError(f"{out}: exists and is not a folder; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / marker).is_file():
            raise SpaceBuildError(f"{out}: the folder is not empty; give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_tiling(tile_size: int, overlap: int) -> int:
    """``tile_size`` rounded up to 16 px, after checking it leaves room for ``overlap``."""
    tile = round_up(max(tile_size, 1))
    if overlap < 0 or tile - overlap < ALIGN:
        raise SpaceBuildError(
            f"an overlap of {overlap} px does not fit a {tile}-px tile; use an overlap "
            f"between 0 and {tile - ALIGN}"
        )
    return tile


def example_images() -> list[Path]:
    """The example images the apps show (the ISBI 2012 test slices)."""
    return sorted(EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []


def description_html(model: UNet, source: str | Path) -> str:
    """What the page says about the model: architecture, figures from its card, colours."""
    cfg = model.config
    card = load_model_card(str(source))
    channels = {1: "greyscale", 3: "RGB"}.get(cfg["n_channels"], f"{cfg['n_channels']}-channel")
    label = html.escape(model_label(source))
    parts = [
        f"<p><strong>Model:</strong> {label}: U-Net, {channels} input, width "
        f"{cfg['base_channels']} ({count_parameters(model):,} parameters), recommended "
        f"threshold {cfg['threshold']}.</p>"
    ]
    scores = metric_names.headline_scores(card_metrics(card))
    if scores:
        shown = html.escape(metric_names.scores_text(scores))  # names escaped, numbers as they are
        dataset = html.escape(without_paths(card_eval_dataset(card) or "its validation data"))
        parts.append(
            f"<p><strong>Measured</strong> on {dataset}, at threshold {cfg['threshold']}: "
            f"{shown}.</p>"
        )
    if cfg["n_classes"] == 1:
        parts.append(
            f"<p><strong>Colours:</strong> in the overlay, <span style='color:{colour_name(1)}'>"
            f"■</span> = <strong>{html.escape(cfg['labels'][0])}</strong>. The probability map "
            "runs from dark blue (0) through green to yellow (1).</p>"
        )
    else:
        legend = ", ".join(
            f"<span style='color:{colour_name(i)}'>■</span> {html.escape(label)}"
            for i, label in enumerate(cfg["labels"])
            if i > 0
        )
        parts.append(f"<p><strong>Colours:</strong> {legend}.</p>")
    return "\n".join(parts)


def page_settings(
    model: UNet, source: str | Path, tile: int, overlap: int, examples: list[str], int8: bool
) -> dict[str, Any]:
    """``space.json``: everything the page needs to know, from the one place each fact lives."""
    viridis = probability_map((np.arange(256, dtype=np.float32) / 255)[None])[0]
    return {
        "title": "U-Net segmentation in your browser",
        "description_html": description_html(model, source),
        "config": model.config.to_dict(),
        "tile_size": tile,
        "overlap": overlap,
        "max_pixels": MAX_PIXELS,
        "max_file_bytes": MAX_FILE_BYTES,
        "palette": PALETTE.tolist(),
        "alpha": ALPHA,
        "viridis": viridis.tolist(),
        "model": MODEL_FILE,
        "int8_model": INT8_MODEL_FILE if int8 else None,
        "examples": examples,
        "onnxruntime_web": ORT_WEB_VERSION,
    }


def space_readme(source: str | Path, body: str, **front_matter: Any) -> str:
    """A Space's README.md: YAML front matter (the Space's configuration), then ``body``."""
    meta: dict[str, Any] = {
        "title": "U-Net segmentation",
        "emoji": "🔬",
        "colorFrom": "indigo",
        "colorTo": "pink",
        **front_matter,
        "license": "mit",
        "pinned": False,
    }
    if is_hub_id(source):
        meta["models"] = [str(source)]  # the model's page then links to this Space
    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n\n{body}"


def static_readme(source: str | Path) -> str:
    body = (
        "# U-Net segmentation in your browser\n\n"
        f"Segments images with {model_label(source)} **in the visitor's browser**: the "
        "network runs on their device with ONNX Runtime Web (WebAssembly), so nothing is "
        "uploaded and nobody waits in a queue.\n\n"
        f"Built by `unet-hub space build --kind static`. Vendored: onnxruntime-web "
        f"{ORT_WEB_VERSION} (MIT, Microsoft), UTIF.js (MIT) and pako (MIT, zlib licence).\n"
    )
    return space_readme(
        source, body, sdk="static", app_file="index.html", custom_headers=ISOLATION_HEADERS
    )


def _copy_page(out: Path) -> None:
    for name in PAGE_FILES:
        shutil.copyfile(STATIC_DIR / name, out / name)
    vendor = check_vendored()
    (out / "vendor").mkdir()
    for name in vendored_files():
        shutil.copyfile(vendor / name, out / "vendor" / name)


def build_static_space(
    source: str | Path,
    out_dir: str | Path,
    *,
    int8: bool = False,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
) -> Path:
    """Write a static Space for the model ``source`` (a folder or a Hub repo id) into
    ``out_dir`` (new or empty, or an earlier build's) and return it.

    ``tile_size`` and ``overlap`` are the page's overlap-tile geometry, as in
    ``segment()``; ``int8`` adds the int8 model (calibrated on the example images), which
    the page uses with ``?int8=1``.
    """
    tile = check_tiling(tile_size, overlap)
    model = UNet.from_pretrained(str(source))
    examples = example_images()
    if int8 and not examples:
        raise SpaceBuildError("--int8 needs example images to calibrate on; none were found")
    out = prepare_out_dir(out_dir, SETTINGS_FILE)
    _copy_page(out)
    export_onnx(model, out / MODEL_FILE)
    if int8:
        export_onnx(model, out / INT8_MODEL_FILE, int8=True, calibration_images=examples)
    (out / EXAMPLES_FOLDER).mkdir()
    for path in examples:
        shutil.copyfile(path, out / EXAMPLES_FOLDER / path.name)
    settings = page_settings(model, source, tile, overlap, [p.name for p in examples], int8)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    (out / README).write_text(static_readme(source))
    return out


def folder_size_mb(folder: str | Path) -> float:
    """The total size of the files under ``folder``, in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6
