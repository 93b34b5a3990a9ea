"""Driving a built static Space in Chromium: a tiny model whose probabilities spread over
(0, 1), and helpers that segment a file in the page and read back what it computed."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_hub import UNet, read_image
from unet_hub.infer.export import model_batch

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
]


def chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")


def spread_model(image_path: Path, seed: int = 0, **config) -> UNet:
    """A random ``UNet(base_channels=4)`` whose output layer is rescaled so that its
    probabilities on ``image_path`` spread over (0, 1) around 0.5: a random network's
    output is nearly constant, which would make mask comparisons meaningless."""
    torch.manual_seed(seed)
    model = UNet(base_channels=4, **config).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(model_batch(read_image(image_path), model.config)))
        scale, centre = 2.0 / float(logits.std()), float(logits.median())
        model.outc.weight *= scale
        model.outc.bias.copy_((model.outc.bias - centre) * scale)
    return model


def open_page(browser, url: str, requests: list[str] | None = None):
    """A new page on the Space at ``url``, once its model is loaded; every request it
    makes is appended to ``requests``."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("#status[data-state=ready]", timeout=60_000)
    return page


def segment_in_page(page, path: Path | None = None, *, example: int | None = None) -> str:
    """Segment ``path`` (or click example number ``example``) in the page and wait until
    the run ends; returns the state it ended in ("done" or "error")."""
    runs = int(page.evaluate("document.body.dataset.runs || 0"))
    if example is None:
        page.set_input_files("#file", str(path))
    else:
        page.locator("#examples button").nth(example).click()
    page.wait_for_function(f"Number(document.body.dataset.runs || 0) > {runs}", timeout=120_000)
    return page.get_attribute("#status", "data-state")


def page_probabilities(page) -> np.ndarray:
    """The last run's probabilities (H×W for one class, classes×H×W for several)."""
    data = base64.b64decode(page.evaluate("unetHub.probabilitiesBase64()"))
    result = page.evaluate(
        "({h: unetHub.result.height, w: unetHub.result.width, c: unetHub.result.classes})"
    )
    shape = (
        (result["h"], result["w"]) if result["c"] == 1 else (result["c"], result["h"], result["w"])
    )
    return np.frombuffer(data, dtype=np.float32).reshape(shape)
