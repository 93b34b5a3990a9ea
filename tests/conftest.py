"""Shared fixtures: small real images on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from support import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "isbi2012"


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write an image (RGB order for colour) with OpenCV, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array), path
    return path


@pytest.fixture
def sample_data(tmp_path: Path) -> Path:
    """A copy of the shipped ISBI sample: 4 image/mask pairs in images/ + masks/."""
    target = tmp_path / "isbi"
    shutil.copytree(SAMPLE / "train", target)
    return target


@pytest.fixture
def sample_test_image() -> Path:
    return SAMPLE / "test" / "00.png"


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling interval while waiting on the condition above
    pytest.fail(f"app.py did not serve {url} within {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def running_app(log: Path, model: Path | None = None) -> Iterator[str]:
    """``python app.py`` on a free port, offline, serving ``model`` (a saved model folder,
    as ``UNET_MODEL``) or the bundled model; yields its URL, stops it afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        # A gradio_client holds a heartbeat stream open, and a graceful shutdown waits for
        # it (5 s); a client closed before the app stops leaves at the next heartbeat.
        "GRADIO_HEARTBEAT_INTERVAL": "0.5",
    }
    env.pop("UNET_MODEL", None)
    if model is not None:
        env["UNET_MODEL"] = str(model)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def serving_in_process(blocks, settings=None) -> Iterator[str]:
    """``blocks`` served in this process as ``python app.py`` serves it (the same ASGI app
    behind the security middleware, on uvicorn, on a free port): for tests that need the
    app on a model of their own without starting a second Python; yields its URL."""
    import threading

    import uvicorn

    from unet_hub.app.server import server_app
    from unet_hub.app.settings import AppSettings

    settings = settings or AppSettings.from_env()
    port = free_port()
    # A gradio_client keeps a heartbeat stream open, which a graceful shutdown waits on:
    # 1 s, then the app's own shutdown (the lifespan: deleting its files) runs.
    config = uvicorn.Config(
        server_app(blocks, settings, []), host="127.0.0.1", port=port, log_level="critical",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the in-process app did not start on port {port}")
        time.sleep(0.05)  # polling interval while waiting on the condition above
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the in-process app did not stop"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """``python app.py`` on a free port, offline, serving the bundled model."""
    with running_app(tmp_path_factory.mktemp("app") / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
    yield client
    client.close()  # its heartbeat stream ends, so the app stops without waiting on it
