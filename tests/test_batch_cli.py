"""Many images at once through the real command line: folders, globs, mirrored names,
bad files, objects (``--instances``), and an output folder that would overwrite an input."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLE, write_image
from support.in_process import cli_here
from unet_hub import UNet, predict_mask, read_image
from unet_hub.cli import main
from unet_hub.files import BUNDLED_MODEL
from unet_hub.infer.batch import find_images, plan_jobs
from unet_hub.infer.instances import TABLE_COLUMNS


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_hub.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    UNet(base_channels=4).save_pretrained(folder)
    return folder


def _slice(size: tuple[int, int], index: int = 0) -> np.ndarray:
    image = cv2.imread(str(SAMPLE / "test" / f"{index:02d}.png"), cv2.IMREAD_GRAYSCALE)
    return image[: size[0], : size[1]]


@pytest.fixture
def inputs(tmp_path) -> Path:
    """in/a.png, in/sub/b.tif, in/sub/deep/c.jpg, a bad in/sub/bad.png and files to skip."""
    folder = tmp_path / "in"
    write_image(folder / "a.png", _slice((48, 64), 0))
    write_image(folder / "sub" / "b.tif", _slice((40, 40), 10))
    write_image(folder / "sub" / "deep" / "c.jpg", _slice((32, 56), 20))
    (folder / "sub" / "bad.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image, and not named like one")
    write_image(folder / ".thumbs" / "hidden.png", _slice((16, 16)))
    return folder


def test_folder_mirrors_names_writes_objects_and_goes_on_past_a_bad_file(inputs, tmp_path):
    out = tmp_path / "out"
    result = _cli(
        "predict", str(BUNDLED_MODEL), str(inputs), "--recursive", "--out", str(out), "--instances"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    bad = inputs / "sub" / "bad.png"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {bad}: this is a text file, not an image; give a PNG, JPEG, TIFF or BMP file"
    ]
    assert result.stderr.rstrip().endswith(f"1 failed (listed above):\n  {bad}")
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "a.png",
        "a_labels.png",
        "objects.csv",
        "sub/b.png",
        "sub/b_labels.png",
        "sub/deep/c.png",
        "sub/deep/c_labels.png",
    ]
    model = UNet.from_pretrained(BUNDLED_MODEL)
    expected = predict_mask(model, read_image(inputs / "sub" / "b.tif"))
    assert np.array_equal(cv2.imread(str(out / "sub" / "b.png"), cv2.IMREAD_UNCHANGED), expected)
    with (out / "objects.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == list(TABLE_COLUMNS)
    for name, labels_file in [
        ("a.png", "a_labels.png"),
        ("sub/deep/c.jpg", "sub/deep/c_labels.png"),
    ]:
        labels = cv2.imread(str(out / labels_file), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16
        mine = [r for r in rows if r["image"] == name]
        assert len(mine) == labels.max()  # one row per object, ids 1..n
        for row in mine:
            assert int(row["area"]) == (labels == int(row["id"])).sum()


def test_without_recursive_only_the_folder_itself(inputs, tmp_path):
    found, problems = find_images([inputs], exclude=tmp_path / "out")
    assert [f.name.as_posix() for f in found] == ["a.png"] and not problems


def _cli_on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal (100 columns), as a user
    sees it: (exit code, everything it wrote)."""
    main_fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "unet_hub.cli", *args],
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100"},
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    return process.wait(timeout=300), b"".join(chunks).decode()


def test_glob_and_files_a_missing_path_and_the_progress_bar(model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    pattern = str(inputs / "**" / "*.[tj]*")  # b.tif and c.jpg, below in/
    missing = tmp_path / "nowhere.png"
    code, text = _cli_on_a_terminal(
        "predict",
        str(model_dir),
        pattern,
        str(inputs / "a.png"),
        str(missing),
        "--recursive",
        "--out",
        str(out),
    )
    assert code == 1, text
    assert f"error: {missing}: no such file or folder" in text
    assert "100%|" in text and "3/3 [" in text  # tqdm's bar, finished
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png", "sub/deep/c.png"]


def test_two_images_of_one_name_keep_their_extensions(tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "x.png", _slice((24, 24)))
    write_image(folder / "x.tif", _slice((24, 24), 10))
    jobs = plan_jobs(find_images([folder])[0], tmp_path / "out")
    assert [(j.mask.name, j.labels.name) for j in jobs] == [
        ("x_png.png", "x_png_labels.png"),
        ("x_tif.png", "x_tif_labels.png"),
    ]


def test_an_out_folder_that_would_overwrite_an_input_is_refused(model_dir, inputs, capsys):
    before = (inputs / "a.png").read_bytes()
    assert main(["predict", str(model_dir), str(inputs), "--out", str(inputs)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --out {inputs}: writing {inputs / 'a.png'} would overwrite the input image "
        f"{inputs / 'a.png'}; choose another --out folder"
    )
    assert (inputs / "a.png").read_bytes() == before


def test_outputs_inside_the_input_folder_are_not_taken_as_inputs(inputs):
    out = inputs / "masks"
    write_image(out / "a.png", _slice((16, 16)))  # a mask of an earlier run
    found, _ = find_images([inputs], recursive=True, exclude=out)
    names = ["a.png", "sub/b.tif", "sub/bad.png", "sub/deep/c.jpg"]
    assert [f.name.as_posix() for f in found] == names
    found, _ = find_images([str(inputs / "**" / "*.png")], recursive=True, exclude=out)
    assert [f.name.as_posix() for f in found] == ["a.png", "sub/bad.png"]


def test_evaluate_scores_the_objects(model_dir):
    """`unet-hub evaluate --instances` (run in this process: support.in_process)."""
    data = SAMPLE / "train"
    result = cli_here(
        "evaluate",
        str(model_dir),
        "--data",
        str(data),
        "--image-size",
        "64",
        "--instances",
        "--watershed",
        "--min-size",
        "3",
    )
    assert result.returncode == 0, result.stderr
    rows = {line.rsplit(None, 2)[0]: line for line in result.stdout.splitlines()}
    by = "objects by watershed, min size 3 px"
    assert f"adapted Rand error (thinned borders), {by}" in rows
    assert f"variation of information, {by}" in rows
    assert "objects per image by watershed, min size 3 px)" in result.stdout


def test_the_objects_default_to_what_the_model_recommends(model_dir, tmp_path):
    recommending = UNet.from_pretrained(model_dir)
    recommending.update_config(watershed=True, min_size=5)
    folder = tmp_path / "recommends"
    recommending.save_pretrained(folder)
    data = ["--data", str(SAMPLE / "train"), "--image-size", "64"]
    by_default = cli_here("evaluate", str(folder), *data, "--instances")
    assert by_default.returncode == 0, by_default.stderr
    assert "objects per image by watershed, min size 5 px)" in by_default.stdout
    overridden = cli_here("evaluate", str(folder), *data, "--no-watershed", "--min-size", "0")
    assert overridden.returncode == 0, overridden.stderr
    assert "objects" not in overridden.stdout  # both post-processings turned off
    unasked = cli_here("evaluate", str(folder), *data)  # evaluate scores what the model recommends
    assert "objects per image by watershed, min size 5 px)" in unasked.stdout
    plain = UNet.from_pretrained(model_dir)
    assert (plain.config.watershed, plain.config.min_size) == (False, 0)
    assert "objects" not in cli_here("evaluate", str(model_dir), *data).stdout
    components = cli_here("evaluate", str(folder), *data, "--instances", "--no-watershed")
    assert "objects per image by connected components, min size 5 px)" in components.stdout
