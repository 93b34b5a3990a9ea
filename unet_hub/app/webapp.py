"""The Gradio web app: drop an image, get its segmentation.

``build_app`` wires Gradio components to the library; ``app.py`` at the top of the
project loads the model named by ``UNET_MODEL`` and launches it, locally or as a
Hugging Face Space.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from unet_hub import metric_names
from unet_hub.app.batch import add_batch_section
from unet_hub.app.zerogpu import segmenter
from unet_hub.data.images import read_image
from unet_hub.errors import UNetHubError
from unet_hub.files import BUNDLED_MODEL, EXAMPLES_DIR
from unet_hub.hub.cards import card_eval_dataset, card_metrics, load_model_card, without_paths
from unet_hub.infer.backends import prepare
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.infer.visualize import colour_name, display_image, overlay, probability_map
from unet_hub.model.unet import UNet
from unet_hub.model.weights import count_parameters

log = logging.getLogger(__name__)

#: Uploads above this many pixels are refused before decoding (override: UNET_MAX_PIXELS).
MAX_PIXELS = int(os.environ.get("UNET_MAX_PIXELS", 25_000_000))
#: Uploads above this size are refused by Gradio itself.
MAX_FILE_SIZE = "50mb"


@dataclass(eq=False)  # compared by identity: each run is a new result
class Result:
    """What one segmentation run keeps for re-thresholding without rerunning the network."""

    probabilities: np.ndarray
    picture: np.ndarray  # the image as the model saw it, uint8 RGB


def _upload_path(payload: Any) -> str | None:
    """The file path of an image upload that Gradio has not preprocessed.

    The app's events skip Gradio's preprocessing, which opens the upload with PIL and
    fails with a generic error on a bad file; the project's reader says what is wrong.
    """
    if payload is None or isinstance(payload, str):
        return payload
    return payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)


def model_source() -> str:
    """The model to serve: ``UNET_MODEL`` (a folder or a Hub repo id) or the bundled one."""
    return os.environ.get("UNET_MODEL") or str(BUNDLED_MODEL)


def describe_model(model: UNet, source: str, metrics: dict[str, float], dataset: str | None) -> str:
    """Markdown telling the user which model runs and what the colours mean."""
    cfg = model.config
    name = "the bundled ISBI 2012 model" if Path(source) == BUNDLED_MODEL else f"`{source}`"
    if Path(source).is_dir() and Path(source) != BUNDLED_MODEL:
        name = f"`{Path(source).name}`"  # a folder's own name: the page shows no server path
    channels = {1: "grayscale", 3: "RGB"}.get(cfg["n_channels"], f"{cfg['n_channels']}-channel")
    lines = [
        f"**Model:** {name} — U-Net, {channels} input, width {cfg['base_channels']} "
        f"({count_parameters(model):,} parameters), recommended threshold {cfg['threshold']}; "
        f"running on {prepare(model).backend}."
    ]
    # The headline scores only (the card has them all); losses mean little to a reader.
    scores = metric_names.headline_scores(metrics)
    if scores:
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()
        )
        lines.append(
            f"**Measured** on {without_paths(dataset or 'its validation data')}, at threshold "
            f"{cfg['threshold']}: {shown}; all figures are in the model card."
        )
    if cfg["n_classes"] == 1:
        lines.append(
            f"**Colours:** in the overlay, <span style='color:{colour_name(1)}'>■</span> "
            f"= **{cfg['labels'][0]}** (probability above the threshold). The probability "
            "map runs from dark blue (0) through green to yellow (1)."
        )
    else:
        legend = ", ".join(
            f"<span style='color:{colour_name(i)}'>■</span> {label}"
            for i, label in enumerate(cfg["labels"])
            if i > 0
        )
        lines.append(
            f"**Colours:** {legend}; {cfg['labels'][0]} is left clear. The probability map "
            "shows the winning class's probability."
        )
    return "\n\n".join(lines)


def build_app(model: UNet, source: str) -> gr.Blocks:
    """The web app for ``model`` (loaded from ``source``)."""
    card = load_model_card(source)
    one_class = model.n_classes == 1
    run_network = segmenter(model)  # segment(model, ·); on ZeroGPU, on its GPU (zerogpu.py)

    def run(upload: Any, threshold: float) -> tuple[np.ndarray, Result]:
        """Segment an uploaded image; return the mask PNG (0/255, or class ids)."""
        image_path = _upload_path(upload)
        if not image_path:
            raise gr.Error("Drop, paste or upload an image first.")
        try:
            image = read_image(image_path, max_pixels=MAX_PIXELS)
            probabilities = run_network(image)
            picture = display_image(image, model.n_channels, model.config["input_scaling"])
        except UNetHubError as e:
            raise gr.Error(str(e).replace(str(image_path), Path(image_path).name)) from None
        except Exception:
            log.exception("segmentation failed for %s", image_path)
            raise gr.Error("Segmentation failed on this image; try another file.") from None
        return mask_from_probabilities(probabilities, threshold), Result(probabilities, picture)

    def views(result: Result | None, threshold: float):
        """The overlay and the probability map of the last run."""
        if result is None:
            return None, None
        labels = mask_from_probabilities(result.probabilities, threshold)
        if one_class:
            labels = labels > 0
            probs = result.probabilities
        else:
            probs = result.probabilities.max(axis=0)
        return overlay(result.picture, labels.astype(np.uint8)), probability_map(probs)

    def rethreshold(result: Result | None, threshold: float):
        """The mask at a new threshold, from the kept probabilities."""
        return None if result is None else mask_from_probabilities(result.probabilities, threshold)

    with gr.Blocks(title="unet-hub · U-Net segmentation") as app:
        gr.Markdown(
            "# U-Net segmentation\nDrop an image (PNG, JPEG, TIFF incl. 16-bit, BMP) into the "
            "box, paste one, or pick an example, then press **Segment**."
        )
        gr.Markdown(describe_model(model, source, card_metrics(card), card_eval_dataset(card)))
        result = gr.State(None)
        with gr.Row():
            with gr.Column() as input_column:
                image = gr.Image(
                    label="Image",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    height=420,
                    elem_id="input-image",
                )
                threshold = gr.Slider(
                    0.01,
                    0.99,
                    value=model.config["threshold"],
                    step=0.01,
                    label="Threshold",
                    info="Pixels above this probability are foreground; moving it "
                    "does not rerun the network.",
                    visible=one_class,
                    elem_id="threshold",
                )
                button = gr.Button("Segment", variant="primary", elem_id="segment-button")
            with gr.Column():
                overlay_out = gr.Image(
                    label="Overlay",
                    format="png",
                    interactive=False,
                    height=420,
                    elem_id="overlay",
                )
                with gr.Row():
                    mask_out = gr.Image(
                        label="Mask (PNG)",
                        format="png",
                        interactive=False,
                        buttons=["download", "fullscreen"],
                        elem_id="mask",
                    )
                    prob_out = gr.Image(
                        label="Probability", format="png", interactive=False, elem_id="prob"
                    )
        examples = sorted(EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []
        if examples:
            with input_column:  # under the Segment button, once the outputs exist
                gr.Examples(
                    examples=[[str(p), model.config["threshold"]] for p in examples],
                    inputs=[image, threshold],
                    outputs=[mask_out, result],
                    fn=run,
                    preprocess=False,
                    run_on_click=True,
                    cache_examples=False,
                    label="Examples: ISBI 2012 EM test slices",
                )

        add_batch_section(model, max_pixels=MAX_PIXELS)  # several images or a zip: objects
        button.click(
            run, [image, threshold], [mask_out, result], api_name="segment", preprocess=False
        )
        mask_out.change(
            views,
            [result, threshold],
            [overlay_out, prob_out],
            api_visibility="private",
            concurrency_id="views",
            concurrency_limit=2,
            show_progress="hidden",  # quick to redraw; a spinner would only flicker
        )
        threshold.release(
            rethreshold,
            [result, threshold],
            [mask_out],
            api_visibility="private",
            concurrency_id="views",
            show_progress="hidden",
        )
        image.clear(
            lambda: (None, None, None, None),
            None,
            [mask_out, overlay_out, prob_out, result],
            api_visibility="private",
        )
    # One network run at a time: the model already uses every core. Others wait in line.
    app.queue(default_concurrency_limit=1, max_size=64)
    return app


def launch(source: str | None = None, **launch_kwargs: Any) -> None:
    """Load the model and serve the app (host and port from GRADIO_SERVER_NAME/PORT)."""
    source = source or model_source()
    model = UNet.from_pretrained(source)
    # Build and check the fast inference path now, so the first request does not wait.
    print(f"unet-hub: serving {source} on the {prepare(model).backend} inference backend")
    app = build_app(model, source)
    allowed = [str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else []
    app.launch(max_file_size=MAX_FILE_SIZE, allowed_paths=allowed, **launch_kwargs)
