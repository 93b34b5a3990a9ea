"""Publish to and load from a Hub: train, push, pull, offline, revisions, private repos and
the errors a user meets, against `LocalHub` with the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so every
client call runs in a subprocess (the CLI, train.py or a Python snippet) with its own
environment; this process only reads the server's storage and the subprocesses' output.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, SAMPLE
from support import ClosingPort, free_port
from support.local_hub import LocalHub, Repo, client_env
from unet_hub import UNet
from unet_hub.cli import recorded_command
from unet_hub.files import BUNDLED_MODEL
from unet_hub.hub.cards import card_kwargs, load_model_card
from unet_hub.model.save import save_model_folder

ALICE, BOB = "hf_alice_token", "hf_bob_token"
WRONG = "hf_wrong_token"
IMAGES = [str(SAMPLE / "test" / "00.png"), str(SAMPLE / "test" / "10.png")]
PUBLISHED = [
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "training_curve.png",
    "training_log.csv",
]
MARKER = "@@RESULT@@"
#: The client retries an unreachable download for ~25 s (several attempts with backoff);
#: a command that gives up at once connects only a few times.
MAX_ATTEMPTS = 3
#: Makes a fresh, empty HF_HOME folder.
Home = Callable[[], Path]

PRELUDE = """
import hashlib, json, sys
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download
from unet_hub import UNet, predict_mask, read_image, segment
from unet_hub.errors import UNetHubError

P = json.loads(sys.argv[1])
api = HfApi()


def out(obj):
    print("@@RESULT@@" + json.dumps(obj))


def sha(array):
    return hashlib.sha256(array.tobytes()).hexdigest()


def predictions(source, **kwargs):
    '''sha256 of the probabilities and of the mask of each image, and the config.'''
    model = UNet.from_pretrained(source, **kwargs)
    images = [read_image(p) for p in P["images"]]
    return {
        "probabilities": [sha(segment(model, image)) for image in images],
        "masks": [sha(predict_mask(model, image)) for image in images],
        "config": model.config.to_dict(),
    }


def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except UNetHubError as e:
        return str(e)
    return None
"""


@dataclass
class Run:
    """What a subprocess did."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_line(self) -> str:
        """The CLI's one ``error:`` line (asserting there is exactly one, no traceback)."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, self.stderr
        return lines[0]


def hub_env(
    endpoint: str, hf_home: Path, token: str | None = None, offline: bool = False
) -> dict[str, str]:
    """A clean environment pointing the client at ``endpoint`` with its own cache."""
    # Tiny models: one thread is faster than threads competing for 2 cores.
    return client_env(endpoint, hf_home, token, offline) | {"OMP_NUM_THREADS": "1"}


def run(args: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)


def cli(*args: str, env: dict[str, str]) -> Run:
    """``unet-hub ARGS...`` in a subprocess."""
    return run(["-m", "unet_hub.cli", *args], env)


def python(code: str, env: dict[str, str], **params: Any) -> Any:
    """Run ``code`` (after PRELUDE) in a subprocess; returns what it passed to ``out()``."""
    result = run(["-c", PRELUDE + textwrap.dedent(code), json.dumps(params)], env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1][len(MARKER) :])


def dead_endpoint() -> str:
    """The URL of a port on which nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png_sha(path: Path) -> str:
    return hashlib.sha256(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes()).hexdigest()


def stored_files(hub: LocalHub, repo_id: str, revision: str = "main") -> dict[str, bytes]:
    """The files of a repo at a revision, read from the LocalHub's storage."""
    repo = Repo(hub.root, "model", repo_id)
    files = repo.files(repo.resolve(revision))
    return {path: repo.blob_path(entry).read_bytes() for path, entry in files.items()}


# -- fixtures: a Hub, a trained model pushed by train.py, and the same model pushed by the CLI


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> LocalHub:
    root = tmp_path_factory.mktemp("hub")
    with LocalHub(root, tokens={ALICE: "alice", BOB: "bob"}) as server:
        yield server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A fresh, empty HF_HOME for each call."""
    return lambda: tmp_path_factory.mktemp("hf_home")


@dataclass
class Trained:
    folder: Path
    args: list[str]
    run: Run


@pytest.fixture(scope="module")
def trained(hub: LocalHub, home: Home, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``train.py --push-to-hub alice/trained --hub-private``: 2 epochs of a tiny U-Net on
    32×32 images."""
    folder = tmp_path_factory.mktemp("run") / "model"
    args = ["train.py", "--data", "examples/isbi2012/train", "--out", str(folder)]
    args += ["--image-size", "32", "--base-channels", "2", "--epochs", "2"]
    args += ["--val-fraction", "0.25", "--push-to-hub", "alice/trained", "--hub-private"]
    result = run(args, hub_env(hub.url, home(), token=ALICE))
    assert result.returncode == 0, result.stderr
    return Trained(folder, args, result)


@pytest.fixture(scope="module")
def pushed(hub: LocalHub, home: Home, trained: Trained) -> Run:
    """``unet-hub push`` of the trained folder to alice/e2e, the token given as --token."""
    result = cli(
        "push", str(trained.folder), "alice/e2e", "--token", ALICE, env=hub_env(hub.url, home())
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def pulled(hub: LocalHub, home: Home, trained: Trained, pushed: Run) -> dict[str, Any]:
    """alice/e2e loaded by repo id in a fresh process with an empty cache, then offline."""
    hf_home = home()
    online = python(
        """
        out({
            "hub": predictions("alice/e2e"),
            "local": predictions(P["folder"]),
            "files": sorted(api.list_repo_files("alice/e2e")),
            "card": Path(hf_hub_download("alice/e2e", "README.md")).read_text(),
            "log": Path(hf_hub_download("alice/e2e", "training_log.csv")).read_text(),
        })
        """,
        hub_env(hub.url, hf_home),
        folder=str(trained.folder),
        images=IMAGES,
    )
    requests_before = len(hub.requests)
    # Offline, and pointed at a dead port: only the cache can answer.
    offline = python(
        'out({"hub": predictions("alice/e2e")})',
        hub_env(dead_endpoint(), hf_home, offline=True),
        images=IMAGES,
    )
    # Not offline, but nothing listens where the Hub should be: the cache still answers.
    unreachable = python(
        'out({"hub": predictions("alice/e2e")})', hub_env(dead_endpoint(), hf_home), images=IMAGES
    )
    return {
        **online,
        "offline": offline,
        "unreachable": unreachable,
        "requests": len(hub.requests) - requests_before,
    }


# -- the round trip ----------------------------------------------------------------------


def test_train_py_pushes_the_best_model(hub: LocalHub, trained: Trained) -> None:
    assert f"pushed to alice/trained: {hub.url}/alice/trained/commit/" in trained.run.stdout
    assert Repo(hub.root, "model", "alice/trained").meta()["private"]
    files = stored_files(hub, "alice/trained")
    assert sorted(files) == PUBLISHED
    for name in ("config.json", "model.safetensors", "training_log.csv", "training_curve.png"):
        assert files[name] == (trained.folder / name).read_bytes(), name
    assert 'UNet.from_pretrained("alice/trained")' in files["README.md"].decode()


def test_cli_push_reports_the_commit(hub: LocalHub, pushed: Run) -> None:
    first, url = pushed.stdout.splitlines()
    assert first.startswith("pushed ") and " to alice/e2e (main): " in first
    assert url == f"{hub.url}/alice/e2e/commit/{first.rsplit(' ', 1)[1]}"


def test_pull_by_repo_id_is_bit_identical_to_the_local_folder(pulled: dict[str, Any]) -> None:
    assert pulled["hub"] == pulled["local"]
    assert pulled["hub"]["config"]["base_channels"] == 2


def test_pull_works_offline_from_the_cache(pulled: dict[str, Any]) -> None:
    assert pulled["offline"]["hub"] == pulled["local"]
    assert pulled["requests"] == 0  # nothing reached the server


def test_a_cached_model_loads_when_the_hub_is_unreachable(pulled: dict[str, Any]) -> None:
    """Not offline: the client tries the Hub, whose port refuses the connection, and
    falls back to the cache."""
    assert pulled["unreachable"]["hub"] == pulled["local"]


def test_cli_predict_by_repo_id_online_then_offline(
    hub: LocalHub, home: Home, pulled: dict[str, Any], tmp_path: Path
) -> None:
    hf_home = home()
    for env, out in [
        (hub_env(hub.url, hf_home), tmp_path / "online"),
        (hub_env(dead_endpoint(), hf_home, offline=True), tmp_path / "offline"),
    ]:
        result = cli("predict", "alice/e2e", *IMAGES, "--out", str(out), env=env)
        assert result.returncode == 0, result.stderr
        masks = [png_sha(out / Path(image).name) for image in IMAGES]
        assert masks == pulled["local"]["masks"]


def test_pushed_files_are_exactly_the_model(
    hub: LocalHub, trained: Trained, pulled: dict[str, Any]
) -> None:
    assert pulled["files"] == PUBLISHED  # no last/, no pickles, nothing else
    local = sorted([*PUBLISHED[1:], "checkpoint.safetensors", "last"])
    assert sorted(p.name for p in trained.folder.iterdir()) == local  # the push added nothing
    assert pulled["log"] == (trained.folder / "training_log.csv").read_text()
    # The weights and the curve (binary files) went through LFS, byte for byte.
    lfs = hub.root / "models" / "alice" / "e2e" / "lfs"
    assert sorted(p.name for p in lfs.iterdir()) == sorted(
        file_sha(trained.folder / name) for name in ("model.safetensors", "training_curve.png")
    )


def test_pushed_card_names_the_repo_and_keeps_the_training_facts(
    trained: Trained, pulled: dict[str, Any]
) -> None:
    card = pulled["card"]
    rows = list(csv.DictReader((trained.folder / "training_log.csv").open()))
    best = max(rows, key=lambda r: float(r["val_dice"]))
    assert 'UNet.from_pretrained("alice/e2e")' in card
    assert "`unet-hub predict alice/e2e image.png --out masks/`" in card
    assert "from gradio_client import Client, handle_file" in card
    assert 'client.predict(handle_file("image.png"), 0.5, api_name="/segment")' in card
    assert f"| validation Dice | {float(best['val_dice']):.4f} |" in card
    assert (
        f"this checkpoint is from epoch {best['epoch']}, the best epoch by validation Dice" in card
    )
    # the command as run, with placeholders for this machine's paths
    assert f"- command: `{recorded_command(trained.args)}`" in card
    assert "--data DATA --out OUT --image-size 32" in card
    assert "- data: train (3 images)" in card
    for meta in ("library_name: unet-hub", "pipeline_tag: image-segmentation", "license: mit"):
        assert meta in card
    assert "- name: alice/e2e" in card and "type: validation_dice" in card  # model-index
    assert "\ndatasets:" not in card  # no Hub data set id is known
    # The local folder is left as it was: its card names no repo.
    assert 'from_pretrained("path/to/model")' in (trained.folder / "README.md").read_text()


def test_card_renders_again_from_its_own_facts(trained: Trained) -> None:
    """The saved card's metadata holds everything it was rendered from (push relies on it)."""
    card = load_model_card(str(trained.folder))
    again = UNet.from_pretrained(trained.folder).generate_model_card(**card_kwargs(card))
    assert str(again) == (trained.folder / "README.md").read_text()


# -- revisions, branches, private repos ---------------------------------------------------


@pytest.fixture(scope="module")
def versions(
    hub: LocalHub, home: Home, trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """alice/versions: the trained model on main, then another model (without a training log)
    on a new branch "dev" and on main, pushed with the library function."""
    torch.manual_seed(123)
    other = save_model_folder(UNet(base_channels=2), tmp_path_factory.mktemp("other") / "m")
    return python(
        """
        from unet_hub.hub.publish import push_model_folder

        repo = "alice/versions"
        shas = [push_model_folder(P["trained"], repo).oid,
                push_model_folder(P["other"], repo, revision="dev").oid,
                push_model_folder(P["other"], repo, commit_message="Second model").oid]
        revs = {"first": shas[0], "main": None, "dev": "dev"}
        out({
            "shas": shas,
            "models": {k: predictions(repo, revision=r) for k, r in revs.items()},
            "files": {k: sorted(api.list_repo_files(repo, revision=r)) for k, r in revs.items()},
            "local": {"trained": predictions(P["trained"]), "other": predictions(P["other"])},
            "branches": sorted(b.name for b in api.list_repo_refs(repo).branches),
            "titles": [c.title for c in api.list_repo_commits(repo)],
        })
        """,
        hub_env(hub.url, home(), token=ALICE),
        trained=str(trained.folder),
        other=str(other),
        images=IMAGES,
    )


def test_second_push_is_a_new_commit_and_a_sha_pins_the_first(versions: dict[str, Any]) -> None:
    first, dev, second = versions["shas"]
    assert len({first, dev, second}) == 3
    assert versions["models"]["first"] == versions["local"]["trained"]
    assert versions["models"]["main"] == versions["local"]["other"]
    assert versions["titles"][0] == "Second model"
    assert versions["titles"][1].startswith("Upload unet-hub model (validation Dice ")


def test_push_to_a_new_branch(versions: dict[str, Any]) -> None:
    assert versions["branches"] == ["dev", "main"]
    assert versions["models"]["dev"] == versions["local"]["other"]


def test_a_push_without_a_log_removes_the_earlier_log_and_curve(versions: dict[str, Any]) -> None:
    assert versions["files"]["first"] == PUBLISHED
    without_log = [f for f in PUBLISHED if not f.startswith("training_")]
    assert versions["files"]["main"] == versions["files"]["dev"] == without_log


def test_private_repo_needs_its_owners_token(hub: LocalHub, home: Home, trained: Trained) -> None:
    env = hub_env(hub.url, home(), token=ALICE)
    assert cli("push", str(trained.folder), "alice/secret", "--private", env=env).returncode == 0
    result = python(
        """
        out({
            "anonymous": error_of(UNet.from_pretrained, "alice/secret"),
            "bob": error_of(UNet.from_pretrained, "alice/secret", token=P["bob"]),
            "alice": predictions("alice/secret", token=P["alice"]),
            "local": predictions(P["folder"]),
        })
        """,
        hub_env(hub.url, home()),
        alice=ALICE,
        bob=BOB,
        folder=str(trained.folder),
        images=IMAGES,
    )
    for who in ("anonymous", "bob"):
        assert result[who].startswith("alice/secret: no such model folder or Hub repo (if the")
        assert "HF_TOKEN" in result[who]
    assert result["alice"] == result["local"]


def test_predict_with_a_revision_uses_that_revision(
    hub: LocalHub, home: Home, tmp_path: Path
) -> None:
    """``unet-hub predict REPO IMAGE --out DIR --revision REV`` with a commit sha and with a
    branch: alice/thresholds holds the bundled model at threshold 0.3 in its first commit
    and at 0.9 on main and on the branch "dev" (different configs, different masks)."""
    from unet_hub import predict_mask, read_image

    image = IMAGES[0]
    folders = {}
    for threshold in (0.3, 0.9):
        model = UNet.from_pretrained(BUNDLED_MODEL)
        model.update_config(threshold=threshold)
        folders[threshold] = save_model_folder(model, tmp_path / f"at-{threshold}")
    expected = {  # the mask of each model, from its local folder
        t: predict_mask(UNet.from_pretrained(f), read_image(image)) for t, f in folders.items()
    }
    assert not np.array_equal(expected[0.3], expected[0.9])
    outs = {rev: tmp_path / "masks" / rev for rev in ("first", "dev", "main")}
    # pushed with the library, then `unet-hub predict` as the console script runs it
    # (cli.main), in one process with an empty cache
    result = python(
        """
        from unet_hub.cli import main
        from unet_hub.hub.publish import push_model_folder

        first = push_model_folder(P["low"], "alice/thresholds").oid
        push_model_folder(P["high"], "alice/thresholds", revision="dev")
        push_model_folder(P["high"], "alice/thresholds")
        revisions = {"first": ["--revision", first], "dev": ["--revision", "dev"], "main": []}
        out({rev: main(["predict", "alice/thresholds", P["image"], "--out", P["outs"][rev],
                        *revisions[rev]]) for rev in revisions})
        """,
        hub_env(hub.url, home(), token=ALICE),
        low=str(folders[0.3]),
        high=str(folders[0.9]),
        image=image,
        outs={rev: str(out) for rev, out in outs.items()},
    )
    assert result == {"first": 0, "dev": 0, "main": 0}
    for rev, threshold in (("first", 0.3), ("dev", 0.9), ("main", 0.9)):
        written = cv2.imread(str(outs[rev] / Path(image).name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, expected[threshold]), rev


def test_a_failed_push_after_training_gives_the_command_to_retry(
    hub: LocalHub, home: Home, tmp_path: Path
) -> None:
    """The token is good (checked before training), but alice may not create a repo under
    bob, so the push after training fails: the model stays in --out, and the message's
    ``unet-hub push`` command, run as printed with bob's token, publishes it privately,
    as the training asked."""
    out = tmp_path / "my run"  # a space: the printed command must still run as copied
    args = ["train.py", "--data", "examples/isbi2012/train", "--out", str(out)]
    args += ["--image-size", "32", "--base-channels", "2", "--epochs", "1"]
    failed = run(
        [*args, "--push-to-hub", "bob/retried", "--hub-private"], hub_env(hub.url, home(), ALICE)
    )
    assert failed.returncode == 2
    assert "bob/retried: your token may not write to this repo" in failed.error_line
    assert f"the model is saved in {out}/; push it later with `" in failed.error_line
    command = failed.error_line.split("push it later with `")[1].split("`")[0]
    assert shlex.split(command) == ["unet-hub", "push", str(out), "bob/retried", "--private"]
    assert Repo(hub.root, "model", "bob/retried").meta() is None  # nothing was pushed
    retried = cli(*shlex.split(command)[1:], env=hub_env(hub.url, home(), BOB))
    assert retried.returncode == 0, retried.stderr
    assert Repo(hub.root, "model", "bob/retried").meta()["private"]
    files = stored_files(hub, "bob/retried")
    for name in ("config.json", "model.safetensors", "training_log.csv"):
        assert files[name] == (out / name).read_bytes(), name


def test_private_applies_only_when_the_push_creates_the_repo(
    hub: LocalHub, home: Home, trained: Trained
) -> None:
    """``unet-hub push --private`` makes a new repo private; pushing again, with or
    without it, leaves an existing repo as it is (private stays private, public public)."""
    pushes = [
        ("alice/private-first", ["--private"]),
        ("alice/private-first", []),
        ("alice/public-first", []),
        ("alice/public-first", ["--private"]),
    ]
    # `unet-hub push` as the console script runs it (cli.main), four times in one process
    result = python(
        """
        from unet_hub.cli import main

        seen = []
        for repo, flags in P["pushes"]:
            assert main(["push", P["folder"], repo, *flags]) == 0
            seen.append(api.model_info(repo).private)
        out(seen)
        """,
        hub_env(hub.url, home(), token=ALICE),
        folder=str(trained.folder),
        pushes=pushes,
    )
    assert result == [True, True, False, False]
    assert Repo(hub.root, "model", "alice/private-first").meta()["private"]
    assert not Repo(hub.root, "model", "alice/public-first").meta()["private"]
    commits = [
        Repo(hub.root, "model", r).commit(Repo(hub.root, "model", r).resolve("main"))
        for r in ("alice/private-first", "alice/public-first")
    ]
    assert all(len(c["parents"]) == 1 for c in commits)  # each second push is a commit


# -- errors a user meets: one `error:` line, exit code 2, fast -------------------------------


def test_push_without_a_token(hub: LocalHub, home: Home, trained: Trained) -> None:
    result = cli("push", str(trained.folder), "alice/x", env=hub_env(hub.url, home()))
    assert result.returncode == 2
    assert result.error_line == (
        "error: alice/x: pushing needs a Hugging Face token with write access; "
        "log in with `hf auth login` or set HF_TOKEN"
    )


@pytest.fixture(scope="module")
def wrong_token_push(hub: LocalHub, home: Home, trained: Trained) -> Run:
    """A push with a token the Hub does not know, given as --token."""
    env = hub_env(hub.url, home())
    return cli("push", str(trained.folder), "alice/x", "--token", WRONG, env=env)


def test_push_with_a_wrong_token(wrong_token_push: Run) -> None:
    assert wrong_token_push.returncode == 2
    assert "the Hub did not accept your token (Invalid credentials" in wrong_token_push.error_line


def test_train_with_a_wrong_token_fails_before_training(
    hub: LocalHub, home: Home, tmp_path: Path
) -> None:
    args = ["train.py", "--data", "examples/isbi2012/train", "--out", str(tmp_path / "m")]
    result = run([*args, "--push-to-hub", "alice/x"], hub_env(hub.url, home(), WRONG))
    assert result.returncode == 2
    assert "did not accept your token" in result.error_line
    assert not (tmp_path / "m").exists()


def test_push_to_someone_elses_namespace(hub: LocalHub, home: Home, trained: Trained) -> None:
    result = cli("push", str(trained.folder), "alice/x", env=hub_env(hub.url, home(), BOB))
    assert result.returncode == 2
    assert "alice/x: your token may not write to this repo" in result.error_line


def test_pull_a_repo_that_does_not_exist(hub: LocalHub, home: Home, tmp_path: Path) -> None:
    result = cli(
        "predict", "alice/nope", IMAGES[0], "--out", str(tmp_path), env=hub_env(hub.url, home())
    )
    assert result.returncode == 2
    assert "error: alice/nope: no such model folder or Hub repo" in result.error_line


def test_pull_with_a_wrong_token(hub: LocalHub, home: Home, pushed: Run, tmp_path: Path) -> None:
    env = hub_env(hub.url, home(), WRONG)
    result = cli("predict", "alice/e2e", IMAGES[0], "--out", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "alice/e2e: the Hub did not accept your token" in result.error_line


def test_pull_offline_without_a_cached_copy(home: Home, tmp_path: Path) -> None:
    env = hub_env(dead_endpoint(), home(), offline=True)
    result = cli("predict", "alice/e2e", IMAGES[0], "--out", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "config.json is not in the local Hub cache and downloads are off" in result.error_line


@pytest.mark.parametrize("command", ["push", "predict"])
def test_an_unreachable_hub_is_one_clear_error_without_retrying(
    home: Home, trained: Trained, command: str, tmp_path: Path
) -> None:
    def attempt(endpoint: str) -> Run:
        env = hub_env(endpoint, home(), token=ALICE)
        if command == "push":
            return cli("push", str(trained.folder), "alice/x", env=env)
        return cli("predict", "alice/e2e", IMAGES[0], "--out", str(tmp_path), env=env)

    refused = attempt(dead_endpoint())
    assert refused.returncode == 2
    assert "the Hub at http://127.0.0.1:" in refused.error_line
    assert "cannot be reached (" in refused.error_line
    assert "Connection refused" in refused.error_line
    # Counted, not timed: a Hub that resets every connection is tried at most
    # MAX_ATTEMPTS times (the client's retry loop would try for ~25 s).
    with ClosingPort() as dead:
        reset = attempt(dead.url)
    assert reset.returncode == 2
    assert "the Hub at http://127.0.0.1:" in reset.error_line
    assert 1 <= dead.connections <= MAX_ATTEMPTS, dead.connections


@pytest.fixture(scope="module")
def strangers(hub: LocalHub, home: Home, trained: Trained) -> dict[str, str | None]:
    """Repos that are not unet-hub models, and what loading each of them says."""
    config = json.loads((trained.folder / "config.json").read_text())
    configs = {
        "alice/other-library": {"architectures": ["BertModel"], "model_type": "bert"},
        "alice/from-the-future": {**config, "format": 2},
    }
    return python(
        """
        api.create_repo("alice/no-config")
        api.upload_file(path_or_fileobj=b"# a data card", path_in_repo="README.md",
                        repo_id="alice/no-config")
        for repo, config in P["configs"].items():
            api.create_repo(repo)
            api.upload_file(path_or_fileobj=json.dumps(config).encode(),
                            path_in_repo="config.json", repo_id=repo)
        out({repo: error_of(UNet.from_pretrained, repo, revision=rev) for repo, rev in
             [("alice/no-config", None), ("alice/other-library", None),
              ("alice/from-the-future", None), ("alice/trained", "no-such-branch")]})
        """,
        hub_env(hub.url, home(), token=ALICE),
        configs=configs,
    )


@pytest.mark.parametrize(
    "repo, message",
    [
        ("alice/no-config", "the repo has no config.json; it is not a unet-hub model"),
        (
            "alice/other-library",
            "config.json is not a unet-hub config (keys: architectures, model_type); "
            "this model is for another library",
        ),
        (
            "alice/from-the-future",
            "config.json has format 2, newer than this unet-hub reads (1); upgrade unet-hub",
        ),
        ("alice/trained", "no revision 'no-such-branch' on the Hub"),
    ],
)
def test_not_a_unet_hub_model(strangers: dict[str, str | None], repo: str, message: str) -> None:
    assert strangers[repo].startswith(f"{repo}: {message}")


def test_the_token_never_leaks(
    hub: LocalHub, trained: Trained, pushed: Run, wrong_token_push: Run
) -> None:
    for result in (trained.run, pushed, wrong_token_push):
        for token in (ALICE, WRONG):
            assert token not in result.stdout + result.stderr
    # Every byte the Hub stored: files of every repo and revision, commit records.
    for path in hub.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert ALICE.encode() not in data and BOB.encode() not in data, path


def test_fine_tuning_from_a_repo_id_records_the_base_model(
    hub: LocalHub, home: Home, pushed: Run, tmp_path: Path
) -> None:
    """Start from alice/e2e (public) by repo id; the pushed card's ``base_model`` names it."""
    env = hub_env(hub.url, home(), token=ALICE)
    args = ["train.py", "--data", "examples/isbi2012/train", "--out", str(tmp_path / "tuned")]
    args += ["--image-size", "32", "--base-channels", "2", "--epochs", "1"]
    args += ["--init-from", "alice/e2e", "--init-revision", "main", "--push-to-hub", "alice/tuned"]
    result = run(args, env)
    assert result.returncode == 0, result.stderr
    card = stored_files(hub, "alice/tuned")["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "alice/e2e"
    assert meta["unet_hub"]["training"]["init_from"] == "alice/e2e at main"
    assert "- fine-tuned from: alice/e2e at main" in card
