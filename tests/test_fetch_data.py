"""`unet-hub fetch-data isbi2012 DIR` against a real local HTTP mirror of the upstream layout.

The mirror (tests/support/isbi_mirror.py) holds the shipped sample slices under the 90
upstream names; ``UNET_HUB_DATA_URL`` points the command at it. Faults are injected per
path: HTTP errors, bytes that are not what they should be, a port nobody listens on.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from support import ClosingPort, free_port
from support.isbi_mirror import Fault, Mirror
from unet_hub.cli import main
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.data.fetch import DATA_URL_VAR, DATASETS, ISBI2012_COMMIT
from unet_hub.data.pairs import find_pairs, select_stems
from unet_hub.files import DATA_ATTRIBUTION_NAME

STEMS = [f"{n:02d}" for n in range(30)]


@pytest.fixture
def mirror(tmp_path: Path):
    with Mirror(tmp_path / "mirror") as served:
        yield served


def fetch_process(url: str, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real command line, in its own process, downloading from ``url``."""
    env = os.environ | {DATA_URL_VAR: url, "NO_PROXY": "127.0.0.1,localhost"}
    argv = [sys.executable, "-m", "unet_hub.cli", "fetch-data", "isbi2012", str(folder), *extra]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_fetch_lays_out_the_set_checks_it_loads_and_a_rerun_downloads_only_what_is_missing(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # A server hiccup on one file is retried (two requests for it).
    mirror.state.faults["train/label/7.png"] = Fault(status=503, times=1)
    out = tmp_path / "isbi2012"
    done = fetch_process(mirror.url, out)
    assert done.returncode == 0, done.stderr
    assert f"in {out}: 90 files (90 downloaded, 0 already there)" in done.stdout

    expected = {
        f"{sub}/{s}.png" for sub in ("train/images", "train/masks", "test/images") for s in STEMS
    }
    assert files_under(out) == expected | {DATA_ATTRIBUTION_NAME}
    assert len(mirror.state.requests) == 91
    assert mirror.state.requests.count("train/label/7.png") == 2
    # upstream N.png lands as NN.png, byte for byte
    assert (out / "train/masks/07.png").read_bytes() == (
        mirror.root / "train/label/7.png"
    ).read_bytes()
    assert (out / "test/images/29.png").read_bytes() == (mirror.root / "test/29.png").read_bytes()
    attribution = (out / DATA_ATTRIBUTION_NAME).read_text()
    for needed in (ISBI2012_COMMIT, "zhixuhao/unet", "MIT", "Arganda-Carreras", "Cardona"):
        assert needed in attribution

    # The project's loader reads it as a training set: 30 pairs, hold-out 25-29.
    pairs = find_pairs(out / "train")
    assert [image.stem for image, _ in pairs] == STEMS
    held_out, rest = select_stems(pairs, "25-29")
    assert len(held_out) == 5 and len(rest) == 25
    data = SegmentationDataset(held_out, image_size=64)
    image, target = data[0]
    assert tuple(image.shape) == (1, 64, 64) and set(np.unique(target.numpy())) == {0.0, 1.0}

    # A re-run asks only for what is missing or damaged.
    (out / "train/masks/05.png").unlink()
    (out / "test/images/12.png").write_bytes(b"half a file")
    (out / "train/masks/.05.png.x1y2.part").write_bytes(b"left by a killed fetch")
    mirror.state.requests.clear()
    monkeypatch.setenv(DATA_URL_VAR, mirror.url)
    assert main(["fetch-data", "isbi2012", str(out)]) == 0
    assert sorted(mirror.state.requests) == ["test/12.png", "train/label/5.png"]
    assert "88 already there" in capsys.readouterr().out
    assert files_under(out) == expected | {DATA_ATTRIBUTION_NAME}


GRAY = np.full((512, 512), 128, np.uint8)
BAD_FILES = {
    "HTTP 404": ("train/image/12.png", Fault(status=404), "HTTP 404"),
    "an HTML page": ("train/label/3.png", Fault(body=b"<html>rate limited</html>"), "not a PNG"),
    "a truncated PNG": ("test/4.png", "truncated", "damaged PNG"),
    "a connection cut mid-file": ("train/image/5.png", "cut", "cannot download"),
    "a grey mask": ("train/label/0.png", Fault(body=png(GRAY)), "values other than 0 and 255"),
    "a colour image": ("train/image/2.png", Fault(body=png(np.dstack([GRAY] * 3))), "mode RGB"),
    "a smaller image": ("test/0.png", Fault(body=png(GRAY[:256, :256])), "256×256"),
}


@pytest.mark.parametrize("remote, fault, problem", BAD_FILES.values(), ids=list(BAD_FILES))
def test_a_bad_file_is_one_error_line_naming_it_and_nothing_half_written(
    mirror: Mirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    remote: str,
    fault: Fault | str,
    problem: str,
) -> None:
    if isinstance(fault, str):  # the real file, cut short: as sent, or announced whole
        whole = (mirror.root / remote).read_bytes()
        fault = Fault(body=whole[:5000], length=len(whole) if fault == "cut" else None)
    mirror.state.faults[remote] = fault
    monkeypatch.setenv(DATA_URL_VAR, mirror.url)
    out = tmp_path / "isbi2012"
    assert main(["fetch-data", "isbi2012", str(out), "--retries", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert f"{mirror.url}/{remote}" in error and problem in error
    # Files before the bad one are complete; the bad one and no temporary file are left.
    remote_of = {f.local: f.remote for f in DATASETS["isbi2012"].files}
    written = files_under(out)
    assert written <= set(remote_of), "only data files (no .part, no attribution yet)"
    assert remote not in {remote_of[name] for name in written}
    for name in written:
        assert (out / name).read_bytes() == (mirror.root / remote_of[name]).read_bytes()


def test_no_network_is_one_line_naming_the_url_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "isbi2012"
    with ClosingPort() as dead:  # accepts each connection and resets it
        monkeypatch.setenv(DATA_URL_VAR, dead.url)
        assert main(["fetch-data", "isbi2012", str(out), "--retries", "1"]) == 2
    assert dead.connections == 2  # tried, then retried once
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert f"cannot download {dead.url}/train/image/0.png" in error and DATA_URL_VAR in error
    assert not out.exists()

    monkeypatch.setenv(DATA_URL_VAR, f"http://127.0.0.1:{free_port()}")  # nothing listens
    assert main(["fetch-data", "isbi2012", str(out), "--retries", "0"]) == 2
    assert "Connection refused" in capsys.readouterr().err
