"""The Gradio web app: drop an image, get its segmentation.

``build_app`` lays out the page (``_page``), makes the handlers (``Handlers``) and wires
them (``_wire``); ``launch`` serves it (``unet_hub.app.server``). ``app.py`` at the top
of the project calls ``launch``, locally or as a Hugging Face Space. What a request may
cost is set by ``AppSettings`` (``unet_hub.app.settings``); every file a handler reads
passes the upload guard (``unet_hub.app.uploads``) and the image gate.
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
from unet_hub.app.memory import limit_malloc_arenas, release_freed_memory
from unet_hub.app.results import Result, ResultStore
from unet_hub.app.server import serve
from unet_hub.app.settings import AppSettings
from unet_hub.app.threshold import THRESHOLD_RANGE, checked_threshold, mask_at, views_at
from unet_hub.app.uploads import uploaded_file
from unet_hub.app.zerogpu import segmenter
from unet_hub.data.images import read_image
from unet_hub.errors import UNetHubError
from unet_hub.files import BUNDLED_MODEL, EXAMPLES_DIR
from unet_hub.hub.cards import card_eval_dataset, card_metrics, load_model_card, without_paths
from unet_hub.infer.backends import prepare
from unet_hub.infer.segment import mask_from_probabilities
from unet_hub.infer.visualize import colour_name, display_image
from unet_hub.model.unet import UNet
from unet_hub.model.weights import count_parameters

log = logging.getLogger(__name__)

#: The one queue of network runs that the single-image, example and batch events share
#: (one at a time: the model already uses every core).
NETWORK = "network"


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
        lines.append(
            f"**Measured** on {without_paths(dataset or 'its validation data')}, at threshold "
            f"{cfg['threshold']}: {metric_names.scores_text(scores)}; all figures are in the "
            "model card."
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


class Handlers:
    """The app's event handlers for ``model``: a run keeps its result in ``store`` under
    a key that the session's ``gr.State`` holds."""

    def __init__(self, model: UNet, settings: AppSettings, store: ResultStore):
        self.model, self.settings, self.store = model, settings, store
        self.one_class = model.n_classes == 1
        # segment(model, ·) within the run's time limit; on ZeroGPU, on its GPU
        self.segment = segmenter(model, run_seconds=settings.run_seconds)

    def run(self, upload: Any, threshold: Any) -> tuple[np.ndarray, str | None]:
        """Segment an uploaded image; return the mask PNG (0/255, or class ids)."""
        # The second output, the key of the kept result, goes to the session's gr.State.
        threshold = checked_threshold(threshold)
        image_path = None
        try:
            image_path = uploaded_file(upload)
            image = read_image(image_path, max_pixels=self.settings.max_pixels)
            probabilities = self.segment(image)
            picture = display_image(
                image, self.model.n_channels, self.model.config["input_scaling"]
            )
        except UNetHubError as e:
            message = str(e)
            if image_path is not None:  # the file's name only, never a server path
                message = message.replace(str(image_path), image_path.name)
            raise gr.Error(message) from None
        except Exception:
            log.exception("segmentation failed for %s", image_path)
            raise gr.Error("Segmentation failed on this image; try another file.") from None
        finally:
            release_freed_memory()  # a run's temporaries: hundreds of MB for a large image
        key = self.store.put(Result(probabilities, picture))
        return mask_from_probabilities(probabilities, threshold), key

    def views(self, key: Any, threshold: Any):
        """The overlay and the probability map of the session's last run."""
        return views_at(self.store, key, threshold, self.one_class)

    def rethreshold(self, key: Any, threshold: Any):
        """The mask at a new threshold, from the kept probabilities."""
        return mask_at(self.store, key, threshold)


@dataclass
class Page:
    """The components the events connect."""

    image: gr.Image
    threshold: gr.Slider
    button: gr.Button
    overlay: gr.Image
    mask: gr.Image
    prob: gr.Image
    result: gr.State
    input_column: gr.Column


def _inputs(model: UNet) -> tuple[gr.Image, gr.Slider, gr.Button]:
    """The input column's image box, threshold slider and button."""
    image = gr.Image(
        label="Image",
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        height=420,
        elem_id="input-image",
    )
    threshold = gr.Slider(
        *THRESHOLD_RANGE,
        value=model.config["threshold"],
        step=0.01,
        label="Threshold",
        info="Pixels above this probability are foreground; moving it does not rerun the network.",
        visible=model.n_classes == 1,
        elem_id="threshold",
    )
    button = gr.Button("Segment", variant="primary", elem_id="segment-button")
    return image, threshold, button


def _outputs() -> tuple[gr.Image, gr.Image, gr.Image]:
    """The overlay, the mask and the probability map."""
    overlay_out = gr.Image(
        label="Overlay", format="png", interactive=False, height=420, elem_id="overlay"
    )
    with gr.Row():
        mask_out = gr.Image(
            label="Mask (PNG)",
            format="png",
            interactive=False,
            buttons=["download", "fullscreen"],
            elem_id="mask",
        )
        prob_out = gr.Image(label="Probability", format="png", interactive=False, elem_id="prob")
    return overlay_out, mask_out, prob_out


def _page(model: UNet, source: str, settings: AppSettings, store: ResultStore) -> Page:
    """The page's text and components (inside an open ``gr.Blocks``)."""
    card = load_model_card(source)
    gr.Markdown(
        "# U-Net segmentation\nDrop an image (PNG, JPEG, TIFF incl. 16-bit, BMP; up to "
        f"{settings.max_pixels / 1e6:g} megapixels) into the box, paste one, or pick an "
        "example, then press **Segment**."
    )
    gr.Markdown(describe_model(model, source, card_metrics(card), card_eval_dataset(card)))
    # The session holds a key into the store only; the store bounds the memory.
    result = gr.State(None, time_to_live=settings.temp_ttl, delete_callback=store.drop)
    with gr.Row():
        with gr.Column() as input_column:
            image, threshold, button = _inputs(model)
        with gr.Column():
            overlay_out, mask_out, prob_out = _outputs()
    return Page(image, threshold, button, overlay_out, mask_out, prob_out, result, input_column)


def _examples(page: Page, handlers: Handlers, threshold: float) -> None:
    """The example images under the Segment button. Clicking one loads it and runs
    ``handlers.run`` like the button does: unpreprocessed, through the upload guard,
    off the API (``gr.Examples``' own ``run_on_click`` would preprocess the file with
    PIL first, and leave that event callable)."""
    examples = sorted(EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []
    if not examples:
        return
    with page.input_column:  # under the Segment button, once the outputs exist
        shown = gr.Examples(
            examples=[[str(p), threshold] for p in examples],
            inputs=[page.image, page.threshold],
            cache_examples=False,
            api_visibility="private",
            label="Examples: ISBI 2012 EM test slices",
        )
    shown.load_input_event.then(
        handlers.run,
        [page.image, page.threshold],
        [page.mask, page.result],
        preprocess=False,
        api_visibility="private",
        concurrency_id=NETWORK,
    )


def _wire(page: Page, handlers: Handlers) -> None:
    """Connect the events: ``/segment`` is the one public endpoint."""
    page.button.click(
        handlers.run,
        [page.image, page.threshold],
        [page.mask, page.result],
        api_name="segment",
        preprocess=False,
        concurrency_id=NETWORK,
    )
    page.mask.change(
        handlers.views,
        [page.result, page.threshold],
        [page.overlay, page.prob],
        api_visibility="private",
        concurrency_id="views",
        concurrency_limit=2,
        show_progress="hidden",  # quick to redraw; a spinner would only flicker
    )
    page.threshold.release(
        handlers.rethreshold,
        [page.result, page.threshold],
        [page.mask],
        api_visibility="private",
        concurrency_id="views",
        show_progress="hidden",
    )
    page.image.clear(
        lambda: (None, None, None, None),
        None,
        [page.mask, page.overlay, page.prob, page.result],
        api_visibility="private",
    )


def build_app(model: UNet, source: str, settings: AppSettings | None = None) -> gr.Blocks:
    """The web app for ``model`` (loaded from ``source``), bounded by ``settings``
    (default: ``AppSettings.from_env()``)."""
    settings = settings or AppSettings.from_env()
    store = ResultStore(settings.state_bytes)
    handlers = Handlers(model, settings, store)
    with gr.Blocks(
        title="unet-hub · U-Net segmentation", delete_cache=settings.cache_schedule
    ) as app:
        page = _page(model, source, settings, store)
        _examples(page, handlers, model.config["threshold"])
        _wire(page, handlers)
        add_batch_section(model, max_pixels=settings.max_pixels)  # several images or a zip
    # One network run at a time: the model already uses every core. Others wait in line,
    # and no route skips the line (api_open: Gradio opens the REST routes off a Space).
    app.queue(default_concurrency_limit=1, max_size=64, api_open=False)
    app.result_store = store  # for the benchmarks
    return app


def launch(source: str | None = None) -> None:
    """Load the model and serve the app (host and port from GRADIO_SERVER_NAME/PORT)."""
    settings = AppSettings.from_env()
    limit_malloc_arenas()  # before the server starts its worker threads
    source = source or model_source()
    model = UNet.from_pretrained(source)
    # Build and check the fast inference path now, so the first request does not wait.
    print(f"unet-hub: serving {source} on the {prepare(model).backend} inference backend")
    app = build_app(model, source, settings)
    allowed = [str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else []
    serve(app, settings, allowed)
