"""`unet-hub space push` against `LocalHub`, with the real huggingface_hub client in
subprocesses: both kinds of Space, their SDK, hardware and files, the model card's
"Try it" link, one-line errors, and the static Space downloaded back into an empty folder
and segmenting in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SAMPLE
from support.cli_batch import Ran, run_batch
from support.local_hub import LocalHub, client_env
from support.space_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_or_skip,
    open_page,
    page_probabilities,
    segment_in_page,
    spread_model,
)
from unet_hub import read_image, segment
from unet_hub.space.push import build_space
from unet_hub.space.serve import serve_space

ALICE = "hf_alice_token"
#: ``python app.py`` as a Space runs it, first saying where ``unet_hub`` comes from.
RUN_AS_ON_A_SPACE = (
    "import os, runpy, sys; sys.path.insert(0, os.getcwd()); import unet_hub; "
    "print('package:', os.path.dirname(unet_hub.__file__), flush=True); "
    "runpy.run_path('app.py', run_name='__main__')"
)
GREY = SAMPLE / "test" / "00.png"
TILING = ["--tile-size", "512", "--overlap", "128"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet_hub.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def hub_facts(env: dict[str, str], code: str, **params) -> dict:
    """Run ``code`` with ``api`` and ``P`` (params) in a subprocess; it sets ``result``."""
    script = "import json, sys\nfrom huggingface_hub import HfApi\napi = HfApi()\n"
    script += "P = json.loads(sys.argv[1])\n" + textwrap.dedent(code)
    script += "\nprint('@@' + json.dumps(result))"
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(params)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.rsplit("@@", 1)[1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with LocalHub(tmp_path_factory.mktemp("hub"), tokens={ALICE: "alice"}) as server:
        yield server


@pytest.fixture(scope="module")
def env(hub, tmp_path_factory) -> dict[str, str]:
    return client_env(hub.url, tmp_path_factory.mktemp("hf_home"), ALICE) | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def pushes(tmp_path_factory, env) -> tuple:
    """A tiny model pushed as alice/tiny, then both kinds of Space pushed for it: the three
    `unet-hub` commands in one Python process (support.cli_batch: each as if alone)."""
    model = spread_model(GREY)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(folder)
    runs = run_batch(
        {
            "model": ["push", str(folder), "alice/tiny"],
            "static": ["space", "push", "alice/tiny", "alice/tiny-browser", "--kind", "static",
                       *TILING],
            "gradio": ["space", "push", "alice/tiny", "alice/tiny-app", "--kind", "gradio",
                       "--hardware", "zero-a10g"],
        },
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
    return (model, folder), runs


@pytest.fixture(scope="module")
def model(pushes):
    """The model and its folder, pushed as alice/tiny."""
    return pushes[0]


@pytest.fixture(scope="module")
def pushed(pushes) -> dict[str, Ran]:
    return {"static": pushes[1]["static"], "gradio": pushes[1]["gradio"]}


@pytest.fixture(scope="module")
def spaces(pushed, env) -> dict:
    return hub_facts(
        env,
        """
        from pathlib import Path
        from huggingface_hub import hf_hub_download
        result = {}
        for kind, repo in (("static", "alice/tiny-browser"), ("gradio", "alice/tiny-app")):
            info = api.space_info(repo)
            result[kind] = {
                "sdk": info.sdk,
                "hardware": info.runtime.requested_hardware if info.runtime else None,
                "files": sorted(api.list_repo_files(repo, repo_type="space")),
                "commits": len(api.list_repo_commits(repo, repo_type="space")),
                "readme": Path(hf_hub_download(repo, "README.md", repo_type="space")).read_text(),
            }
        for name in ("app.py", "requirements.txt"):
            path = hf_hub_download("alice/tiny-app", name, repo_type="space")
            result[name] = Path(path).read_text()
        result["card"] = Path(hf_hub_download("alice/tiny", "README.md")).read_text()
    """,
    )


def local_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["static", "gradio"])
def test_push_prints_the_url_and_makes_the_space_in_one_commit(
    kind, hub, pushed, spaces, model, tmp_path
) -> None:
    name = {"static": "tiny-browser", "gradio": "tiny-app"}[kind]
    assert pushed[kind].stdout.splitlines()[0] == f"{hub.url}/spaces/alice/{name}"
    assert spaces[kind]["sdk"] == kind
    assert spaces[kind]["commits"] == 2  # the repo's creation, then one upload
    options = {"tile_size": 512, "overlap": 128} if kind == "static" else {}
    built = build_space(model[1], tmp_path / "built", kind=kind, **options)
    # Built here from the local folder, which a Gradio Space carries as model/; from the
    # Hub, the Space downloads the model instead. Everything else is the same.
    expected = [f for f in local_files(built) if not f.startswith("model/")]
    assert spaces[kind]["files"] == sorted([".gitattributes", *expected])


def test_gradio_space_serves_the_hub_model_on_zerogpu(spaces) -> None:
    gradio = spaces["gradio"]
    assert gradio["hardware"] == "zero-a10g"
    readme = gradio["readme"]
    assert "sdk: gradio" in readme and "python_version: '3.12'" in readme
    assert "models:\n- alice/tiny" in readme and "suggested_hardware: zero-a10g" in readme
    assert "os.environ.setdefault(\"UNET_MODEL\", 'alice/tiny')" in spaces["app.py"]
    requirements = spaces["requirements.txt"].splitlines()
    assert any(r.startswith("spaces") for r in requirements)
    assert any(r.startswith("onnxruntime") for r in requirements)
    assert "unet_hub/app/zerogpu.py" in gradio["files"]
    assert not any(
        f.startswith(("unet_hub/space/static/", "unet_hub/pretrained/")) for f in gradio["files"]
    )


def test_model_card_links_to_each_space(hub, spaces) -> None:
    for name in ("tiny-browser", "tiny-app"):
        assert (
            f"**Try it:** [segment your images on this Space]({hub.url}/spaces/alice/{name})"
            in spaces["card"]
        )
    assert "models:\n- alice/tiny" in spaces["static"]["readme"]


def test_push_without_a_token_is_a_one_line_error(env, model) -> None:
    no_token = {k: v for k, v in env.items() if k != "HF_TOKEN"}
    result = cli("space", "push", str(model[1]), "alice/x", "--kind", "static", env=no_token)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: alice/x: pushing needs a Hugging Face token")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["alice/x", "--kind", "static", "--hardware", "zero-a10g"], "takes no --hardware"),
        (["not a repo", "--kind", "gradio"], "not a repo"),
    ],
)
def test_bad_push_arguments_fail_before_any_request(model, capsys, args, expected) -> None:
    from unet_hub.cli import main

    assert main(["space", "push", str(model[1]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1


def test_downloaded_static_space_segments_in_chromium(pushed, env, model, tmp_path) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "downloaded"
    folder.mkdir()
    hub_facts(
        env,
        """
        from huggingface_hub import snapshot_download
        snapshot_download("alice/tiny-browser", repo_type="space", local_dir=P["folder"])
        result = None
    """,
        folder=str(folder),
    )
    with serve_space(folder) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_page(browser, url)
        assert segment_in_page(page, GREY) == "done"
        probabilities = page_probabilities(page)
        browser.close()
    expected = segment(model[0], read_image(GREY), tile_size=512, overlap=128)
    assert np.abs(probabilities - expected).max() <= 1e-3


def test_built_gradio_space_of_the_bundled_model_runs_from_its_own_files(tmp_path) -> None:
    """The folder alone (its own ``unet_hub`` copy, no UNET_MODEL) serves the app."""
    import os

    from conftest import _wait_until_serving
    from support import free_port
    from unet_hub.files import BUNDLED_MODEL

    folder = build_space(BUNDLED_MODEL, tmp_path / "space", kind="gradio")
    assert 'UNET_MODEL",' not in (folder / "app.py").read_text()
    assert (folder / "unet_hub/pretrained/isbi2012/model.safetensors").is_file()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "UNET_MODEL"}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env |= {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "app.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_AS_ON_A_SPACE],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}/", process, log)
        # The app runs the Space's own copy of the package, not the one installed here.
        assert log.read_text().splitlines()[0] == f"package: {folder / 'unet_hub'}"
    finally:
        process.terminate()
        process.wait(timeout=30)
