"""onnxruntime-web, pinned: the browser runtime a static Space ships beside its page.

Why it is fetched and not committed: the files the page needs weigh 14.3 MB (the
threaded SIMD WebAssembly binary is 14.2 MB of it), eight times the rest of the wheel.
``space build`` takes them once from the npm registry's tarball of the pinned version,
checks the tarball against the registry's sha512 ``integrity`` recorded here, and keeps
them under ``$UNET_HUB_CACHE`` (default ``~/.cache/unet-hub``); after that it works
offline. The small decoders the page also needs (UTIF.js for TIFF, pako's inflate for
compressed TIFFs, 90 kB together) are committed under ``static/vendor/`` with their
licences. The Space itself never loads anything from a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from unet_hub.errors import UNetHubError

ORT_WEB_VERSION = "1.30.0"
ORT_WEB_TARBALL = (
    f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
)
#: The registry's ``dist.integrity`` of that tarball (``npm view onnxruntime-web@1.30.0``).
ORT_WEB_INTEGRITY = (
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ"
    "=="
)
#: The WebAssembly-only build: the API (classic script, for the worker's importScripts),
#: its loader and the threaded SIMD binary it loads (threads or not).
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


class VendorError(UNetHubError):
    """The pinned browser runtime could not be fetched or failed its check."""


def _cache_dir() -> Path:
    root = os.environ.get("UNET_HUB_CACHE") or Path.home() / ".cache" / "unet-hub"
    return Path(root) / f"onnxruntime-web-{ORT_WEB_VERSION}"


def _check_integrity(data: bytes) -> None:
    algorithm, _, expected = ORT_WEB_INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise VendorError(
            f"onnxruntime-web {ORT_WEB_VERSION}: the downloaded tarball does not match its "
            "pinned sha512; check your npm registry or proxy and try again"
        )


def _download() -> bytes:
    try:
        with urllib.request.urlopen(ORT_WEB_TARBALL, timeout=120) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise VendorError(
            f"onnxruntime-web {ORT_WEB_VERSION} is needed once from the npm registry "
            f"({ORT_WEB_TARBALL}) and could not be fetched ({e}); connect and run again"
        ) from None


def ort_web_dir() -> Path:
    """The folder holding ``ORT_WEB_FILES`` of the pinned version, fetched on first use."""
    target = _cache_dir()
    if all((target / name).is_file() for name in ORT_WEB_FILES):
        return target
    data = _download()
    _check_integrity(data)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in ORT_WEB_FILES:
            member = archive.extractfile(f"package/dist/{name}")
            if member is None:
                raise VendorError(f"onnxruntime-web {ORT_WEB_VERSION}: {name} missing from tarball")
            (partial / name).write_bytes(member.read())
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # complete or absent, never half-written
    return target
