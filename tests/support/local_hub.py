"""A small, local, Hugging Face Hub-compatible HTTP server for tests (stdlib only).

It is driven by the real `huggingface_hub` client (checked against huggingface_hub 2.4.0): point
the client at it with ``HF_ENDPOINT=<LocalHub.url>`` and ``HF_HUB_DISABLE_XET=1`` (Xet storage
is not emulated, so the client must use the classic LFS protocol).

Routes (``{repo}`` is ``{ns}/{name}``, ``{type}`` is ``models``, ``datasets`` or ``spaces``,
``{prefix}`` is empty for models, ``datasets/`` or ``spaces/`` otherwise):

- ``GET  /api/whoami-v2``                         who owns the Bearer token (401 without one)
- ``POST /api/repos/create``, ``DELETE /api/repos/delete`` (a Space needs an ``sdk``; its
  ``sdk`` and requested ``hardware`` come back in its repo info)
- ``POST /api/validate-yaml``                     accepts any README metadata
- ``GET  /api/{type}/{repo}[/revision/{rev}]``    repo info (id, sha, private, siblings, ...)
- ``GET  /api/{type}/{repo}/tree/{rev}[/{path}]`` tree listing (``recursive=true`` supported)
- ``GET  /api/{type}/{repo}/refs``, ``GET /api/{type}/{repo}/commits/{rev}``
- ``POST /api/{type}/{repo}/preupload/{rev}``     upload mode ("regular" or "lfs") per file
- ``POST /api/{type}/{repo}/commit/{rev}``        NDJSON commit: header, file, lfsFile,
  deletedFile, deletedFolder lines
- ``POST|DELETE /api/{type}/{repo}/branch/{branch}``
- ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` and ``.../verify`` (LFS, basic transfer)
- ``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}`` file download (``Range`` supported)
- storage origin: ``PUT|GET|HEAD /lfs/{type}/{repo}/{sha256}?expires=..&sig=..`` (signed URLs)
- anything else: 404 with a JSON ``{"error": ...}`` body.

LFS is emulated like the real Hub: ``preupload`` answers "lfs" for files matched by the repo's
``.gitattributes`` (the initial commit of every repo writes the Hub's default one, so
``*.safetensors`` is LFS), binary files (NUL byte in the sample) and files >= 10 MiB. The client
then calls the LFS batch endpoint, PUTs the bytes to a signed URL on a second port (the
"storage origin", standing in for S3/CDN, so no auth header is sent to it, exactly as with the
real Hub), calls verify, and commits an ``lfsFile`` line referencing the sha256. Downloads of
LFS files answer ``302`` with ``X-Linked-Etag`` / ``X-Linked-Size`` and a signed ``Location`` on
the storage origin; the client does not follow cross-origin redirects on HEAD and drops the
``authorization`` header for the GET, so private LFS files are served through the signature.

Behaviour copied from the real Hub (not always what one would guess):

- missing or invisible repo: 401 (anonymous) or 404 (authenticated), with
  ``X-Error-Code: RepoNotFound``;
- an unknown token is rejected everywhere with 401 and
  ``X-Error-Message: Invalid credentials in Authorization header``, even on public repos;
- committing or preuploading to a branch that does not exist is a 404 ``RevisionNotFound``
  ("Invalid rev id: ..."): branches are created with ``create_branch`` first (the
  ``hf upload`` CLI does that client-side);
- ``create_repo`` on an existing repo is a 409; the client turns it into success with ``exist_ok``.

Every commit is a new 40-hex sha whose JSON record (on disk, under ``root``) holds the full file
table, so old revisions stay readable. Not implemented: pull requests (``create_pr``), tags,
Xet, ``cardData`` in repo info, pagination (all results come in one page). Request bodies are
read in memory: this is meant for test-sized files.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

HF_HUB_VERSION_CHECKED = "2.4.0"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
SIGNED_URL_TTL = 3600
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
#: The SDKs a Space repo may be created with (``huggingface_hub.constants.SPACES_SDK_TYPES``).
_SPACE_SDKS = ("gradio", "docker", "static", "streamlit")
_DEFAULT_LFS_PATTERNS = (  # the patterns of the .gitattributes the Hub writes in new repos
    *("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib"),
    *("*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot"),
    *("*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors"),
    *("saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip"),
    *("*.zst", "*tfevents*"),
)
DEFAULT_GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _DEFAULT_LFS_PATTERNS
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class HubError(Exception):
    """An error answered as JSON ``{"error": message}`` with the Hub's X-Error-* headers."""

    def __init__(self, status: int, message: str, code: str | None = None, **headers: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {"X-Error-Message": message.encode("ascii", "backslashreplace").decode()}
        if code is not None:
            self.headers["X-Error-Code"] = code
        self.headers.update({k.replace("_", "-"): v for k, v in headers.items()})


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id (sha1 of ``blob <size>\\0<data>``) of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _repo_not_found(user: str | None) -> HubError:
    return HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")


def _revision_not_found(rev: str) -> HubError:
    return HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def _valid_repo_id(ns: str, name: str) -> bool:
    return all(_NAME_RE.fullmatch(part) and "--" not in part for part in (ns, name))


def _sibling(path: str, entry: dict[str, Any], blobs: bool) -> dict[str, Any]:
    """One ``siblings`` item of repo info (sizes and LFS info only with ``?blobs=true``)."""
    sibling: dict[str, Any] = {"rfilename": path}
    if blobs:
        sibling |= {"size": entry["size"], "blobId": entry["oid"]}
        if lfs := entry["lfs"]:
            sibling["lfs"] = {
                "sha256": lfs["oid"],
                "size": lfs["size"],
                "pointerSize": lfs["pointerSize"],
            }
    return sibling


def _check_path(path: Any) -> str:
    parts = path.split("/") if isinstance(path, str) else [""]
    if any(p in ("", ".", "..", ".git") for p in parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class Repo:
    """One repo on disk: ``repo.json`` (visibility, branches), ``commits/<sha>.json`` (full file
    table per commit), ``objects/<git oid>`` (regular files) and ``lfs/<sha256>`` (LFS files)."""

    def __init__(self, root: Path, rtype: str, repo_id: str) -> None:
        self.rtype, self.repo_id = rtype, repo_id
        self.dir = root / f"{rtype}s" / repo_id

    def meta(self) -> dict[str, Any] | None:
        path = self.dir / "repo.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_meta(self, meta: dict[str, Any]) -> None:
        _write_atomic(self.dir / "repo.json", json.dumps(meta, indent=1).encode())

    def resolve(self, rev: str) -> str | None:
        """Branch name (optionally ``refs/heads/...``) or full commit sha -> commit sha."""
        branches = (self.meta() or {}).get("branches", {})
        name = rev.removeprefix("refs/heads/")
        if name in branches:
            return branches[name]
        if _SHA1_RE.fullmatch(rev) and (self.dir / "commits" / f"{rev}.json").is_file():
            return rev
        return None

    def commit(self, sha: str) -> dict[str, Any]:
        return json.loads((self.dir / "commits" / f"{sha}.json").read_text())

    def files(self, sha: str) -> dict[str, dict[str, Any]]:
        return self.commit(sha)["files"]

    def put_blob(self, data: bytes) -> dict[str, Any]:
        oid = git_blob_oid(data)
        if not (self.dir / "objects" / oid).is_file():
            _write_atomic(self.dir / "objects" / oid, data)
        return {"oid": oid, "size": len(data), "lfs": None}

    def lfs_path(self, sha256: str) -> Path:
        return self.dir / "lfs" / sha256

    def lfs_entry(self, sha256: str) -> dict[str, Any] | None:
        """File-table entry for an uploaded LFS object, or None if it was never uploaded."""
        path = self.lfs_path(sha256)
        if not _SHA256_RE.fullmatch(sha256) or not path.is_file():
            return None
        size = path.stat().st_size
        pointer = lfs_pointer(sha256, size)
        lfs = {"oid": sha256, "size": size, "pointerSize": len(pointer)}
        return {"oid": git_blob_oid(pointer), "size": size, "lfs": lfs}

    def blob_path(self, entry: dict[str, Any]) -> Path:
        return (
            self.lfs_path(entry["lfs"]["oid"])
            if entry["lfs"]
            else self.dir / "objects" / entry["oid"]
        )

    def lfs_patterns(self, files: dict[str, dict[str, Any]]) -> list[str]:
        """Patterns marked ``filter=lfs`` in the ``.gitattributes`` of a file table."""
        entry = files.get(".gitattributes")
        text = self.blob_path(entry).read_text(errors="replace") if entry else ""
        rules = [line.split() for line in text.splitlines()]
        return [r[0] for r in rules if len(r) > 1 and "filter=lfs" in r[1:]]

    def write_commit(
        self, parent: str | None, files: dict, title: str, message: str, author: str
    ) -> str:
        record = {
            "parents": [parent] if parent else [],
            "title": title,
            "message": message,
            "author": author,
            "date": _now(),
            "files": files,
        }
        salt = f"{time.time_ns()}{secrets.token_hex(8)}"
        sha = hashlib.sha1((json.dumps(record, sort_keys=True) + salt).encode()).hexdigest()
        _write_atomic(
            self.dir / "commits" / f"{sha}.json", json.dumps({"id": sha, **record}).encode()
        )
        return sha

    def set_branch(self, branch: str, sha: str | None) -> None:
        meta = self.meta() or {}
        if sha is None:
            meta["branches"].pop(branch, None)
        else:
            meta["branches"][branch] = sha
        self.save_meta(meta)


def _is_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    if size >= LFS_SIZE_THRESHOLD or b"\0" in sample:
        return True
    for pattern in patterns:
        target = path if "/" in pattern else path.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
            return True
    return False


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end) of a single ``bytes=`` range, None if unsatisfiable, False if unparseable."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or m.groups() == ("", ""):
        return False  # invalid/multi-range: ignored, as RFC 9110 allows
    first, last = m.groups()
    if not first:  # suffix range: last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


_REPO = r"(?P<types>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_GIT = r"/(?:(?P<prefix>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)\.git/info/lfs/objects"
_RESOLVE = r"/(?:(?P<prefix>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve"
_HUB_ROUTES = [
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("DELETE", r"/api/repos/delete", "delete_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("GET", rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("GET", rf"/api/{_REPO}/refs", "refs"),
    ("GET", rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", "commits"),
    ("POST", rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST DELETE", rf"/api/{_REPO}/branch/(?P<branch>[^/]+)", "branch"),
    ("POST", rf"{_GIT}/batch", "lfs_batch"),
    ("POST", rf"{_GIT}/verify", "lfs_verify"),
    ("GET HEAD", rf"{_RESOLVE}/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
_STORAGE_ROUTES = [
    (
        "GET HEAD PUT",
        r"/lfs/(?P<rtype>model|dataset|space)/(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<oid>[0-9a-f]{64})",
        "storage",
    ),
]
_COMPILED = {
    storage: [(m.split(), re.compile(p), h) for m, p, h in routes]
    for storage, routes in ((False, _HUB_ROUTES), (True, _STORAGE_ROUTES))
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: LocalHub, is_storage: bool) -> None:
        self.hub, self.is_storage = hub, is_storage
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Routes a request to an ``h_<name>`` method; a `HubError` becomes a JSON error response."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # --- plumbing -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.hub = self.server.hub
        split = urlsplit(self.path)
        self.raw_path, self.query = split.path, parse_qs(split.query)
        try:
            self.body = self._read_body()
            for methods, pattern, name in _COMPILED[self.server.is_storage]:
                match = pattern.fullmatch(self.raw_path)
                if match and self.command in methods:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    if "types" in params:
                        params["rtype"] = _TYPES[params.pop("types")]
                    elif "ns" in params and "rtype" not in params:
                        params["rtype"] = _TYPES.get(params.pop("prefix", "models"), "model")
                    getattr(self, f"h_{name}")(**params)
                    return
            hint = " (set HF_HUB_DISABLE_XET=1: no Xet here)" if "xet" in self.raw_path else ""
            raise HubError(404, f"LocalHub does not implement {self.command} {self.raw_path}{hint}")
        except HubError as e:
            self._json(e.status, {"error": e.message}, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away
        except Exception as e:  # a bug in this server: report it rather than hang the client
            self._json(500, {"error": f"LocalHub internal error: {e!r}"})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Invalid JSON body: {e}") from e
        if not isinstance(data, dict):
            raise HubError(400, "Expected a JSON object")
        return data

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", ctype or "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict | None = None, ctype: str = "") -> None:
        body = json.dumps(obj).encode()
        self._send(status, body, headers, ctype or "application/json; charset=utf-8")

    def _send_file(self, path: Path, headers: dict[str, str]) -> None:
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = _parse_range(self.headers["Range"], size) if "Range" in self.headers else False
        if rng is None:
            raise HubError(416, "Range not satisfiable", Content_Range=f"bytes */{size}")
        if rng:
            (start, end), status = rng, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for key, value in {**headers, "Accept-Ranges": "bytes"}.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command != "HEAD":
            with path.open("rb") as f:
                f.seek(start)
                self.wfile.write(f.read(end - start + 1))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.hub.requests.append((self.command, urlsplit(self.path).path, int(code)))
        if self.server.hub.verbose:
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            super().log_message(format, *args)

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or self.hub.url.split('://')[1]}"

    # --- auth and lookups -----------------------------------------------------------------------

    def _user(self) -> str | None:
        """User owning the Bearer token; None if anonymous; 401 if the token is unknown."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, token = auth.partition(" ")
        user = self.hub.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, INVALID_CREDENTIALS)
        return user

    def _repo(self, rtype: str, ns: str, name: str, write: bool = False) -> tuple[Repo, str | None]:
        user = self._user()
        if not _valid_repo_id(ns, name):
            raise _repo_not_found(user)
        repo = Repo(self.hub.root, rtype, f"{ns}/{name}")
        meta = repo.meta()
        if meta is None or (meta["private"] and user != ns):
            raise _repo_not_found(user)
        if write and user != ns:
            if user is None:
                raise HubError(401, "You must be authenticated with a write token")
            raise HubError(403, f"You don't have the rights to write to {rtype}s/{ns}/{name}")
        return repo, user

    def _rev(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise _revision_not_found(rev)
        return sha

    def _branch(self, repo: Repo, rev: str) -> tuple[str, str]:
        """(branch name, head sha) for a write target, which must be an existing branch."""
        if self.query.get("create_pr", ["0"])[0] not in ("0", "false", ""):
            raise HubError(400, "LocalHub does not support pull requests (create_pr)")
        branch = rev.removeprefix("refs/heads/")
        head = (repo.meta() or {}).get("branches", {}).get(branch)
        if head is None:
            raise _revision_not_found(rev)
        return branch, head

    def _signed_url(self, method: str, repo: Repo, sha256: str) -> str:
        ns, name = repo.repo_id.split("/")
        path = f"/lfs/{repo.rtype}/{quote(ns)}/{quote(name)}/{sha256}"
        expires = int(time.time()) + SIGNED_URL_TTL
        signature = self.hub.sign(method, path, expires)
        return f"{self.hub.storage_url}{path}?expires={expires}&sig={signature}"

    # --- API routes -----------------------------------------------------------------------------

    def h_whoami(self) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid username or password.")
        auth = {"type": "access_token", "accessToken": {"displayName": "localhub", "role": "write"}}
        self._json(200, {"type": "user", "name": user, "fullname": user, "orgs": [], "auth": auth})

    def h_create_repo(self) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        data = self._json_body()
        name, ns = str(data.get("name") or ""), data.get("organization") or user
        rtype = data.get("type") or "model"
        if rtype not in _PREFIXES or not _valid_repo_id(str(ns), name):
            raise HubError(400, f"Invalid repo name or type: {name!r} ({rtype})")
        if ns != user:
            raise HubError(403, f'You don\'t have the rights to create a {rtype} under "{ns}"')
        if rtype == "space" and data.get("sdk") not in _SPACE_SDKS:
            raise HubError(400, f"Invalid Space SDK {data.get('sdk')!r}: one of {_SPACE_SDKS}")
        repo = Repo(self.hub.root, rtype, f"{ns}/{name}")
        url = f"{self.base_url}/{_PREFIXES[rtype]}{ns}/{name}"
        with self.hub.lock:
            if repo.meta() is not None:
                self._json(409, {"error": f"You already created this {rtype} repo", "url": url})
                return
            private = data.get("visibility") == "private" or data.get("private") is True
            gitattributes = repo.put_blob(DEFAULT_GITATTRIBUTES.encode())
            files = {".gitattributes": gitattributes}
            sha = repo.write_commit(None, files, "initial commit", "", user)
            meta = {"private": private, "createdAt": _now(), "branches": {"main": sha}}
            if rtype == "space":  # what the Space runs on, as repo info reports it
                meta |= {"sdk": data["sdk"], "hardware": data.get("hardware")}
            repo.save_meta(meta)
        self._json(200, {"url": url, "name": f"{ns}/{name}", "id": f"{ns}/{name}"})

    def h_delete_repo(self) -> None:
        data = self._json_body()
        rtype, ns = data.get("type") or "model", data.get("organization") or self._user() or ""
        if rtype not in _PREFIXES:
            raise HubError(400, f"Invalid repo type: {rtype!r}")
        repo, _ = self._repo(rtype, str(ns), str(data.get("name")), write=True)
        with self.hub.lock:
            shutil.rmtree(repo.dir)
        self._json(200, {})

    def h_validate_yaml(self) -> None:
        self._user()
        self._json(200, {"errors": [], "warnings": []})

    def h_repo_info(self, rtype: str, ns: str, name: str, rev: str = "main") -> None:
        repo, _ = self._repo(rtype, ns, name)
        sha = self._rev(repo, rev)
        commit, meta = repo.commit(sha), repo.meta() or {}
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = [_sibling(p, e, blobs) for p, e in sorted(commit["files"].items())]
        info = {"id": repo.repo_id, "author": ns, "sha": sha, "private": meta["private"]}
        info |= {"gated": False, "disabled": False, "createdAt": meta["createdAt"], "tags": []}
        info |= {"lastModified": commit["date"], "siblings": siblings}
        if rtype == "space":
            hardware = {"current": None, "requested": meta.get("hardware")}
            info |= {"sdk": meta.get("sdk"), "runtime": {"stage": "BUILDING", "hardware": hardware}}
        self._json(200, info)

    def h_tree(self, rtype: str, ns: str, name: str, rev: str, path: str = "") -> None:
        repo, _ = self._repo(rtype, ns, name)
        files = repo.files(self._rev(repo, rev))
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries: list[dict[str, Any]] = []
        seen_dirs: set[str] = set()
        for p, e in sorted(files.items()):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                d = prefix + "/".join(parts[:depth])
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    sub = sorted((q, f["oid"]) for q, f in files.items() if q.startswith(d + "/"))
                    oid = hashlib.sha1(json.dumps(sub).encode()).hexdigest()
                    entries.append({"type": "directory", "oid": oid, "size": 0, "path": d})
            if recursive or len(parts) == 1:
                item = {"type": "file", "oid": e["oid"], "size": e["size"], "path": p}
                entries.append(item | ({"lfs": e["lfs"]} if e["lfs"] else {}))
        self._json(200, entries)

    def h_refs(self, rtype: str, ns: str, name: str) -> None:
        repo, _ = self._repo(rtype, ns, name)
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
            for b, sha in sorted((repo.meta() or {})["branches"].items())
        ]
        self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def h_commits(self, rtype: str, ns: str, name: str, rev: str) -> None:
        repo, _ = self._repo(rtype, ns, name)
        sha: str | None = self._rev(repo, rev)
        history = []
        while sha:
            c = repo.commit(sha)
            item = {"id": sha, "title": c["title"], "message": c["message"], "date": c["date"]}
            history.append(item | {"authors": [{"user": c["author"]}]})
            sha = c["parents"][0] if c["parents"] else None
        self._json(200, history)

    def h_preupload(self, rtype: str, ns: str, name: str, rev: str) -> None:
        repo, _ = self._repo(rtype, ns, name, write=True)
        _, head = self._branch(repo, rev)
        files = repo.files(head)
        patterns = repo.lfs_patterns(files)
        answer = []
        for f in self._json_body().get("files", []):
            path = _check_path(f.get("path"))
            sample = base64.b64decode(f.get("sample") or "")
            mode = "lfs" if _is_lfs(path, int(f.get("size") or 0), sample, patterns) else "regular"
            old = files.get(path)
            oid = None if old is None else old["lfs"]["oid"] if old["lfs"] else old["oid"]
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": answer, "commitOid": head})

    def h_commit(self, rtype: str, ns: str, name: str, rev: str) -> None:
        repo, user = self._repo(rtype, ns, name, write=True)
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except ValueError as e:
            raise HubError(400, f"Commit payload must be NDJSON: {e}") from e
        if not all(isinstance(line, dict) for line in lines):
            raise HubError(400, "Each NDJSON line must be an object")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a 'header' line")
        header = lines[0]["value"]
        with self.hub.lock:
            branch, head = self._branch(repo, rev)
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.files(head))
            for op in lines[1:]:
                key, value = op.get("key"), op.get("value") or {}
                path = _check_path(value.get("path"))
                if key == "file":
                    raw = value.get("content", "")
                    base64_encoded = value.get("encoding") == "base64"
                    files[path] = repo.put_blob(
                        base64.b64decode(raw) if base64_encoded else raw.encode()
                    )
                elif key == "lfsFile":
                    entry = repo.lfs_entry(str(value.get("oid")))
                    if entry is None:
                        raise HubError(400, f"LFS object of {path} was never uploaded")
                    files[path] = entry
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                    if not doomed:
                        raise HubError(404, "No folder with this name", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation: {key!r}")
            title, description = str(header.get("summary") or ""), header.get("description") or ""
            message = f"{title}\n\n{description}" if description else title
            sha = repo.write_commit(head, files, title, message, user or "")
            repo.set_branch(branch, sha)
        url = f"{self.base_url}/{_PREFIXES[rtype]}{repo.repo_id}/commit/{sha}"
        self._json(200, {"commitOid": sha, "commitUrl": url, "pullRequestUrl": None})

    def h_branch(self, rtype: str, ns: str, name: str, branch: str) -> None:
        repo, _ = self._repo(rtype, ns, name, write=True)
        with self.hub.lock:
            heads = (repo.meta() or {})["branches"]
            if self.command == "DELETE":
                if branch == "main":
                    raise HubError(403, "Cannot delete the default branch")
                if branch not in heads:
                    raise _revision_not_found(branch)
                repo.set_branch(branch, None)
            else:
                if branch in heads:
                    raise HubError(409, "Reference already exists")
                if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", branch) or _SHA1_RE.fullmatch(branch):
                    raise HubError(400, f"Invalid branch name: {branch!r}")
                start = str(self._json_body().get("startingPoint") or "main")
                repo.set_branch(branch, self._rev(repo, start))
        self._json(200, {})

    # --- LFS ------------------------------------------------------------------------------------

    def h_lfs_batch(self, rtype: str, ns: str, name: str) -> None:
        data = self._json_body()
        if data.get("operation") != "upload" or "basic" not in data.get("transfers", ["basic"]):
            raise HubError(400, "LocalHub only supports LFS 'upload' with the 'basic' transfer")
        repo, _ = self._repo(rtype, ns, name, write=True)
        verify = f"{self.base_url}/{_PREFIXES[rtype]}{repo.repo_id}.git/info/lfs/objects/verify"
        objects = []
        for obj in data.get("objects", []):
            oid, size = str(obj.get("oid")), obj.get("size")
            item: dict[str, Any] = {"oid": oid, "size": size}
            if not _SHA256_RE.fullmatch(oid) or not isinstance(size, int):
                item["error"] = {"code": 422, "message": "Invalid object (oid must be a sha256)"}
                item["size"] = size if isinstance(size, int) else 0
            elif repo.lfs_entry(oid) is None:  # else: already stored, no action needed
                upload = {"href": self._signed_url("PUT", repo, oid), "expires_in": SIGNED_URL_TTL}
                item["actions"] = {"upload": upload, "verify": {"href": verify}}
            objects.append(item)
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        self._json(200, body, ctype="application/vnd.git-lfs+json")

    def h_lfs_verify(self, rtype: str, ns: str, name: str) -> None:
        repo, _ = self._repo(rtype, ns, name, write=True)
        data = self._json_body()
        entry = repo.lfs_entry(str(data.get("oid")))
        if entry is None or entry["size"] != data.get("size"):
            raise HubError(404, f"LFS object {data.get('oid')} not found (or wrong size)")
        self._json(200, {}, ctype="application/vnd.git-lfs+json")

    def h_storage(self, rtype: str, ns: str, name: str, oid: str) -> None:
        expires = self.query.get("expires", ["0"])[0]
        signature = self.hub.sign("PUT" if self.command == "PUT" else "GET", self.raw_path, expires)
        valid = hmac.compare_digest(signature, self.query.get("sig", [""])[0])
        if not valid or not expires.isdigit() or int(expires) < time.time():
            raise HubError(403, "Request has expired or has an invalid signature")
        repo = Repo(self.hub.root, rtype, f"{ns}/{name}")
        if not _valid_repo_id(ns, name) or repo.meta() is None:
            raise HubError(404, "The specified bucket does not exist.")
        if self.command == "PUT":
            if hashlib.sha256(self.body).hexdigest() != oid:
                raise HubError(400, "Uploaded content does not match the sha256 in the URL")
            _write_atomic(repo.lfs_path(oid), self.body)
            self._send(200, b"", {"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})
        elif repo.lfs_entry(oid) is None:
            raise HubError(404, "The specified key does not exist.")
        else:
            self._send_file(repo.lfs_path(oid), {"ETag": f'"{oid}"'})

    # --- downloads ------------------------------------------------------------------------------

    def h_resolve(self, rtype: str, ns: str, name: str, rev: str, path: str) -> None:
        repo, _ = self._repo(rtype, ns, name)
        sha = self._rev(repo, rev)
        entry = repo.files(sha).get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", X_Repo_Commit=sha)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"'}
        if entry["lfs"]:
            location = self._signed_url("GET", repo, entry["lfs"]["oid"])
            headers |= {
                "Location": location,
                "X-Linked-Etag": f'"{entry["lfs"]["oid"]}"',
                "X-Linked-Size": str(entry["lfs"]["size"]),
            }
            self._send(302, f"Found. Redirecting to {location}".encode(), headers)
        else:
            self._send_file(repo.blob_path(entry), headers)


class LocalHub:
    """Hub-compatible server on 127.0.0.1, storing repos under ``root``.

    ``tokens`` maps a token string to a user name (``{"hf_test_token": "alice"}``). Use as a
    context manager, or call `start` / `stop`. ``requests`` records ``(method, path, status)``
    of every request, for tests that want to check which routes the client used.
    """

    def __init__(
        self,
        root: Path,
        port: int = 0,
        tokens: dict[str, str] | None = None,
        *,
        storage_port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.root, self.port, self.storage_port = Path(root), port, storage_port
        self.tokens = dict(tokens or {})
        self.verbose = verbose
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, int]] = []
        self._secret = secrets.token_bytes(32)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """Base URL of the Hub API, to use as ``HF_ENDPOINT``."""
        return self._address(0)

    @property
    def storage_url(self) -> str:
        """Base URL of the LFS storage origin (the stand-in for S3 / the CDN)."""
        return self._address(1)

    def _address(self, index: int) -> str:
        if not self._servers:
            raise RuntimeError("LocalHub is not started")
        host, port = self._servers[index].server_address[:2]
        return f"http://{host}:{port}"

    def sign(self, method: str, path: str, expires: int | str) -> str:
        """HMAC signature of a storage URL (``path`` is the raw, quoted URL path)."""
        message = f"{method} {path} {expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def start(self) -> LocalHub:
        """Bind both ports and serve in daemon threads (ready as soon as this returns)."""
        if self._servers:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        for port, is_storage in ((self.port, False), (self.storage_port, True)):
            server = _Server(("127.0.0.1", port), self, is_storage)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening sockets."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client_env(
    endpoint: str, hf_home: str | Path, token: str | None = None, offline: bool = False
) -> dict[str, str]:
    """This process's environment, cleaned of Hub and proxy settings, pointing the real
    ``huggingface_hub`` client at ``endpoint`` with its own cache ``hf_home``: for the
    subprocesses that tests run against a ``LocalHub``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_")) and "proxy" not in k.lower()
    }
    env |= {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def main(argv: list[str] | None = None) -> None:
    """Command line: serve a LocalHub until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m support.local_hub",
        description="Local Hugging Face Hub-compatible server for tests.",
    )
    parser.add_argument("--root", type=Path, required=True, help="folder where repos are stored")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--storage-port", type=int, default=0, help="LFS storage port (0: any)")
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN:USER")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    tokens = {}
    for item in args.token:
        token, sep, user = item.partition(":")
        if not (sep and token and user):
            parser.error(f"--token expects TOKEN:USER, got {item!r}")
        tokens[token] = user
    hub = LocalHub(
        args.root, args.port, tokens, storage_port=args.storage_port, verbose=args.verbose
    ).start()
    print(f"LocalHub serving {args.root} at {hub.url} (LFS storage: {hub.storage_url})")
    print("Point huggingface_hub at it with:")
    print(f"  export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1")
    users = ", ".join(sorted(set(tokens.values()))) or "none: read-only"
    print(f"  export HF_TOKEN=<one of the --token values>   (users: {users})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
