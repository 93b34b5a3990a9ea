"""Tests of `support.local_hub.LocalHub`, driven by the real huggingface_hub client.

`huggingface_hub` reads HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE when it is imported, so every
client call runs in a fresh subprocess with its own environment (see `run_client`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.local_hub import LocalHub, client_env

ALICE, BOB = "hf_alice_test_token", "hf_bob_test_token"
MARKER = "@@RESULT@@"
PRELUDE = """
import json, sys
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

P = json.loads(sys.argv[1])
api = HfApi()


def out(obj):
    print("@@RESULT@@" + json.dumps(obj))


def error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:
        response = getattr(e, "response", None)
        return {
            "type": type(e).__name__,
            "mro": [c.__name__ for c in type(e).__mro__],
            "status": getattr(response, "status_code", None),
        }
    return None


def read(path):
    return Path(path).read_bytes().hex()
"""


def run_client(
    hub: LocalHub,
    hf_home: Path,
    code: str,
    *,
    token: str | None = None,
    offline: bool = False,
    **params: Any,
) -> Any:
    """Run `code` with the real client in a subprocess; returns what it passed to `out()`."""
    env = client_env(hub.url, hf_home, token, offline)
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), json.dumps(params)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"client failed:\n{proc.stdout}\n{proc.stderr}"
    results = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert results, f"client printed no result:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(results[-1][len(MARKER) :])


def write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> LocalHub:
    with LocalHub(tmp_path_factory.mktemp("hub"), tokens={ALICE: "alice", BOB: "bob"}) as server:
        yield server


@pytest.fixture(scope="module")
def seeded(hub: LocalHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """alice/unet-test: v1 (README, config, 100 KB safetensors, sub/notes.txt), then v2."""
    tmp = tmp_path_factory.mktemp("seed")
    v1 = {
        "README.md": b"---\nlicense: mit\n---\n# Test model\n",
        "config.json": b'{"in_channels": 3, "out_channels": 1}',
        "model.safetensors": os.urandom(100_000),
        "sub/notes.txt": b"nested file\n",
    }
    v2 = {**v1, "config.json": b'{"in_channels": 3, "out_channels": 2}'}
    v2["model.safetensors"] = os.urandom(100_000)
    del v2["sub/notes.txt"]
    start = len(hub.requests)
    result = run_client(
        hub,
        tmp / "hfhome",
        """
        url = api.create_repo("alice/unet-test")
        again = api.create_repo("alice/unet-test", exist_ok=True)
        conflict = error_of(api.create_repo, "alice/unet-test")
        c1 = api.upload_folder(repo_id="alice/unet-test", folder_path=P["v1"])
        c2 = api.upload_folder(
            repo_id="alice/unet-test", folder_path=P["v2"], delete_patterns="sub/*",
            commit_message="v2",
        )
        out({"url": str(url), "again": again.repo_id, "conflict": conflict,
             "sha1": c1.oid, "sha2": c2.oid})
        """,
        token=ALICE,
        v1=str(write_tree(tmp / "v1", v1)),
        v2=str(write_tree(tmp / "v2", v2)),
    )
    return {**result, "v1": v1, "v2": v2, "requests": hub.requests[start:]}


def test_create_repo_and_upload_use_lfs(hub: LocalHub, seeded: dict[str, Any]) -> None:
    assert seeded["url"] == f"{hub.url}/alice/unet-test"
    assert seeded["again"] == "alice/unet-test"
    assert seeded["conflict"]["status"] == 409
    for sha in (seeded["sha1"], seeded["sha2"]):
        assert len(sha) == 40 and int(sha, 16) >= 0
    assert seeded["sha1"] != seeded["sha2"]
    oid = hashlib.sha256(seeded["v1"]["model.safetensors"]).hexdigest()
    # The safetensors file went through the LFS batch API, a PUT to storage and a verify call.
    for call in [
        ("POST", "/alice/unet-test.git/info/lfs/objects/batch", 200),
        ("PUT", f"/lfs/model/alice/unet-test/{oid}", 200),
        ("POST", "/alice/unet-test.git/info/lfs/objects/verify", 200),
        ("POST", "/api/validate-yaml", 200),  # README.md metadata check
    ]:
        assert call in seeded["requests"]


def test_download_matches_upload(hub: LocalHub, seeded: dict[str, Any], tmp_path: Path) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        files = {name: read(hf_hub_download("alice/unet-test", name)) for name in P["names"]}
        snapshot = Path(snapshot_download("alice/unet-test"))
        snap = {p.relative_to(snapshot).as_posix(): read(p) for p in snapshot.rglob("*")
                if p.is_file()}
        tree = [{"path": f.path, "lfs": f.lfs and f.lfs.sha256}
                for f in api.list_repo_tree("alice/unet-test", recursive=True)]
        out({"files": files, "snapshot": snap, "tree": tree,
             "info_sha": api.model_info("alice/unet-test").sha})
        """,
        names=["config.json", "model.safetensors", "README.md"],
    )
    v2 = seeded["v2"]
    for name, data in result["files"].items():
        assert bytes.fromhex(data) == v2[name]
    assert set(result["snapshot"]) == {".gitattributes", *v2}
    for name, data in v2.items():
        assert bytes.fromhex(result["snapshot"][name]) == data
    lfs = {entry["path"]: entry["lfs"] for entry in result["tree"]}
    assert lfs["model.safetensors"] == hashlib.sha256(v2["model.safetensors"]).hexdigest()
    assert lfs["config.json"] is None
    assert result["info_sha"] == seeded["sha2"]


def test_list_repo_files_and_tree(hub: LocalHub, seeded: dict[str, Any], tmp_path: Path) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        out({
            "main": sorted(api.list_repo_files("alice/unet-test")),
            "v1": sorted(api.list_repo_files("alice/unet-test", revision=P["sha1"])),
            "top": sorted((type(e).__name__, e.path)
                          for e in api.list_repo_tree("alice/unet-test", revision=P["sha1"])),
            "sub": [e.path for e in api.list_repo_tree("alice/unet-test", "sub",
                                                       revision=P["sha1"])],
        })
        """,
        sha1=seeded["sha1"],
    )
    assert result["main"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert result["v1"] == [*result["main"], "sub/notes.txt"]
    assert ["RepoFolder", "sub"] in result["top"]
    assert ["RepoFile", "sub/notes.txt"] not in result["top"]
    assert result["sub"] == ["sub/notes.txt"]


def test_old_revision_stays_readable(hub: LocalHub, seeded: dict[str, Any], tmp_path: Path) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        old = {n: read(hf_hub_download("alice/unet-test", n, revision=P["sha1"]))
               for n in ("config.json", "model.safetensors", "sub/notes.txt")}
        new = read(hf_hub_download("alice/unet-test", "config.json"))
        commits = [c.commit_id for c in api.list_repo_commits("alice/unet-test")]
        out({"old": old, "new": new, "commits": commits,
             "info": api.model_info("alice/unet-test", revision=P["sha1"]).sha})
        """,
        sha1=seeded["sha1"],
    )
    for name, data in result["old"].items():
        assert bytes.fromhex(data) == seeded["v1"][name]
    assert bytes.fromhex(result["new"]) == seeded["v2"]["config.json"]
    assert result["commits"][:2] == [seeded["sha2"], seeded["sha1"]]
    assert len(result["commits"]) == 3  # + the "initial commit" with .gitattributes
    assert result["info"] == seeded["sha1"]


def test_branches(hub: LocalHub, tmp_path: Path) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        api.create_repo("alice/branchy")
        api.upload_file(path_or_fileobj=b"main v1", path_in_repo="a.txt", repo_id="alice/branchy")
        missing = error_of(api.upload_file, path_or_fileobj=b"x", path_in_repo="b.txt",
                           repo_id="alice/branchy", revision="nope")
        api.create_branch("alice/branchy", branch="dev")
        twice = error_of(api.create_branch, "alice/branchy", branch="dev")
        api.create_branch("alice/branchy", branch="dev", exist_ok=True)
        api.upload_file(path_or_fileobj=b"dev only", path_in_repo="b.txt", repo_id="alice/branchy",
                        revision="dev")
        out({
            "missing": missing, "twice": twice,
            "dev": read(hf_hub_download("alice/branchy", "b.txt", revision="dev")),
            "dev_a": read(hf_hub_download("alice/branchy", "a.txt", revision="dev")),
            "main": error_of(hf_hub_download, "alice/branchy", "b.txt"),
            "refs": sorted(b.name for b in api.list_repo_refs("alice/branchy").branches),
        })
        """,
        token=ALICE,
    )
    assert result["missing"]["type"] == "RevisionNotFoundError"  # like the real Hub
    assert result["twice"]["status"] == 409
    assert bytes.fromhex(result["dev"]) == b"dev only"
    assert bytes.fromhex(result["dev_a"]) == b"main v1"
    assert "EntryNotFoundError" in result["main"]["mro"]
    assert result["refs"] == ["dev", "main"]


def test_private_repo(hub: LocalHub, tmp_path: Path) -> None:
    run_client(
        hub,
        tmp_path / "owner",
        """
        api.create_repo("alice/secret", private=True)
        api.upload_file(path_or_fileobj=b"top secret", path_in_repo="s.txt", repo_id="alice/secret")
        api.upload_file(path_or_fileobj=b"\\0weights", path_in_repo="w.bin", repo_id="alice/secret")
        out(None)
        """,
        token=ALICE,
    )
    result = run_client(
        hub,
        tmp_path / "others",
        """
        out({
            "anon": error_of(hf_hub_download, "alice/secret", "s.txt"),
            "anon_info": error_of(api.model_info, "alice/secret"),
            "bob": error_of(hf_hub_download, "alice/secret", "s.txt", token=P["bob"]),
            "bob_write": error_of(api.upload_file, path_or_fileobj=b"x", path_in_repo="x",
                                  repo_id="alice/unet-test", token=P["bob"]),
            "bad_token": error_of(hf_hub_download, "alice/secret", "s.txt", token="hf_wrong"),
            "owner": read(hf_hub_download("alice/secret", "s.txt", token=P["alice"])),
            "owner_lfs": read(hf_hub_download("alice/secret", "w.bin", token=P["alice"])),
        })
        """,
        bob=BOB,
        alice=ALICE,
    )
    for case in ("anon", "anon_info", "bob"):
        assert result[case]["type"] == "RepositoryNotFoundError", case
    assert result["anon"]["status"] == 401 and result["bob"]["status"] == 404
    assert result["bob_write"]["status"] == 403
    assert result["bad_token"]["status"] == 401  # "Invalid credentials in Authorization header"
    assert bytes.fromhex(result["owner"]) == b"top secret"
    assert bytes.fromhex(result["owner_lfs"]) == b"\0weights"  # served via a signed storage URL


def test_whoami(hub: LocalHub, tmp_path: Path) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        out({"me": api.whoami()["name"], "bad": error_of(api.whoami, token="hf_wrong")})
        """,
        token=ALICE,
    )
    assert result["me"] == "alice"
    assert result["bad"]["status"] == 401


def test_missing_file_revision_and_repo(
    hub: LocalHub, seeded: dict[str, Any], tmp_path: Path
) -> None:
    result = run_client(
        hub,
        tmp_path / "hfhome",
        """
        out({
            "file": error_of(hf_hub_download, "alice/unet-test", "nope.txt"),
            "rev": error_of(hf_hub_download, "alice/unet-test", "config.json", revision="nope"),
            "repo": error_of(hf_hub_download, "alice/does-not-exist", "config.json"),
        })
        """,
    )
    assert "EntryNotFoundError" in result["file"]["mro"]
    assert result["file"]["status"] == 404
    assert result["rev"]["type"] == "RevisionNotFoundError"
    assert result["repo"]["type"] == "RepositoryNotFoundError"


def test_offline_mode_uses_cache(hub: LocalHub, seeded: dict[str, Any], tmp_path: Path) -> None:
    code = """
    out({
        "file": read(hf_hub_download("alice/unet-test", "model.safetensors")),
        "snapshot": sorted(p.name for p in Path(snapshot_download("alice/unet-test")).iterdir()),
    })
    """
    online = run_client(hub, tmp_path / "hfhome", code)
    before = len(hub.requests)
    offline = run_client(hub, tmp_path / "hfhome", code, offline=True)
    assert offline == online
    assert bytes.fromhex(offline["file"]) == seeded["v2"]["model.safetensors"]
    assert len(hub.requests) == before  # nothing reached the server


def _raw(hub_url: str, method: str, path: str, **headers: str) -> http.client.HTTPResponse:
    url = urlsplit(hub_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_raw_http_details(hub: LocalHub, seeded: dict[str, Any]) -> None:
    # Unknown routes (e.g. the client's /api/agent-harnesses probe) are JSON 404s.
    probe = _raw(hub.url, "GET", "/api/agent-harnesses")
    assert probe.status == 404 and "error" in json.loads(probe.body)
    # Regular file: quoted git-sha1 ETag, X-Repo-Commit, ranges.
    head = _raw(hub.url, "HEAD", "/alice/unet-test/resolve/main/config.json")
    config = seeded["v2"]["config.json"]
    assert head.status == 200 and head.getheader("X-Repo-Commit") == seeded["sha2"]
    git_oid = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert head.getheader("ETag") == f'"{git_oid}"'
    assert int(head.getheader("Content-Length")) == len(config)
    part = _raw(hub.url, "GET", "/alice/unet-test/resolve/main/config.json", Range="bytes=2-5")
    assert part.status == 206 and part.body == config[2:6]
    assert part.getheader("Content-Range") == f"bytes 2-5/{len(config)}"
    assert (
        _raw(hub.url, "GET", "/alice/unet-test/resolve/main/config.json", Range="bytes=999-").status
        == 416
    )
    # LFS file: 302 to the signed storage origin, with X-Linked-Etag / X-Linked-Size.
    weights = seeded["v2"]["model.safetensors"]
    lfs = _raw(hub.url, "HEAD", "/alice/unet-test/resolve/main/model.safetensors")
    assert lfs.status == 302
    assert lfs.getheader("X-Linked-Etag") == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert lfs.getheader("X-Linked-Size") == str(len(weights))
    location = urlsplit(lfs.getheader("Location"))
    assert f"{location.scheme}://{location.netloc}" == hub.storage_url
    signed = f"{location.path}?{location.query}"
    assert _raw(hub.storage_url, "GET", signed).body == weights
    assert _raw(hub.storage_url, "GET", location.path + "?expires=9999999999&sig=bad").status == 403
    # Errors carry the Hub's X-Error-Code.
    missing = _raw(hub.url, "HEAD", "/alice/unet-test/resolve/main/nope")
    assert missing.getheader("X-Error-Code") == "EntryNotFound"
    assert missing.getheader("X-Repo-Commit") == seeded["sha2"]
    assert (
        _raw(hub.url, "GET", "/api/models/alice/nope").getheader("X-Error-Code") == "RepoNotFound"
    )
