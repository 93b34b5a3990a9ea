"""The browser code a static Space ships, pinned: onnxruntime-web (the network's runtime),
UTIF.js (TIFF, 16-bit included), UPNG.js (16-bit PNG, which browsers decode to 8 bits)
and pako's inflate (which both use), all from npm.

Why the files are committed under ``static/vendor/`` rather than fetched by ``space
build``: they weigh 14.4 MB (the threaded SIMD WebAssembly binary is 14.2 MB of it) but
3.7 MB compressed, which is what git and the wheel store, about twice the bundled model.
Committed, ``space build`` and its tests work offline and build the same folder every
time; fetched, every build and every CI run would need the npm registry. The Space
itself never loads anything from a CDN.

``python -m unet_hub.space.vendor`` refreshes them: it downloads each package's tarball
from the npm registry, checks it against the registry's sha512 ``integrity`` recorded
in ``PACKAGES`` and writes the files and their ``SHA256SUMS``, to which
``check_vendored`` (run by every build, and by the tests) holds the committed files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from unet_hub.errors import UNetHubError

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # ``npm view NAME@VERSION dist.integrity``
    files: dict[str, str]  # path in the tarball -> name under static/vendor/

    @property
    def tarball(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"


ORT_WEB = NpmPackage(
    "onnxruntime-web",
    "1.30.0",
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CX"
    "AfKYQ==",
    # The WebAssembly-only build: the API as a classic script (the worker importScripts
    # it), the loader it imports and the threaded SIMD binary (used with 1 thread too).
    {
        "package/dist/ort.wasm.min.js": "ort.wasm.min.js",
        "package/dist/ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs",
        "package/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
    },
)
PACKAGES = (
    ORT_WEB,
    NpmPackage(
        "utif",
        "3.1.0",
        "sha512-WEo4D/xOvFW53K5f5QTaTbbiORcm2/pCL9P6qmJnup+17eYfKaEhDeX9PeQkuyEoIxlbGklDuGl8xw"
        "uXYMrrXQ==",
        {"package/UTIF.js": "UTIF.js", "package/LICENSE": "UTIF.LICENSE"},
    ),
    NpmPackage(
        "upng-js",
        "2.1.0",
        "sha512-d3xzZzpMP64YkjP5pr8gNyvBt7dLk/uGI67EctzDuVp4lCZyVMo0aJO6l/VDlgbInJYDY6cnClLoBp29e"
        "KWI6g==",
        {"package/UPNG.js": "UPNG.js", "package/LICENSE": "UPNG.LICENSE"},
    ),
    NpmPackage(
        "pako",
        "3.0.3",
        "sha512-tmrebBBYI5FOw8QICGwJNqE8fotC8R+gwcxOvoFNv+GKehOI6Lc6YBolNcQNnC4v96l1wt7rh102if"
        "D4kVeZAQ==",
        {
            "package/dist/browser/pako_inflate.umd.min.js": "pako_inflate.min.js",
            "package/LICENSE": "pako.LICENSE",
        },
    ),
)
#: ``sha256sum`` of the committed files (source-map comments are stripped: no maps shipped).
CHECKSUMS = VENDOR_DIR / "SHA256SUMS"
ORT_WEB_VERSION = ORT_WEB.version


class VendorError(UNetHubError):
    """The vendored browser files are missing or are not the pinned ones."""


def vendored_files() -> dict[str, str]:
    """The vendored files' names and sha256, from ``CHECKSUMS``."""
    rows = [line.split() for line in CHECKSUMS.read_text().splitlines() if line.strip()]
    return {name: digest for digest, name in rows}


def check_vendored() -> Path:
    """The vendor folder, after checking each file is the pinned one."""
    for name, expected in vendored_files().items():
        path = VENDOR_DIR / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise VendorError(
                f"{name}: the vendored browser file is missing or changed; reinstall unet-hub "
                "(or run python -m unet_hub.space.vendor in a checkout)"
            )
    return VENDOR_DIR


def _strip_source_map(data: bytes) -> bytes:
    lines = data.decode().splitlines(keepends=True)
    return "".join(line for line in lines if "sourceMappingURL" not in line).encode()


def fetch_package(package: NpmPackage) -> dict[str, bytes]:
    """The package's files, from its registry tarball checked against its integrity."""
    with urllib.request.urlopen(package.tarball, timeout=120) as response:
        data = response.read()
    algorithm, _, expected = package.integrity.partition("-")
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
        raise VendorError(f"{package.name} {package.version}: the tarball fails its integrity")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, name in package.files.items():
            content = archive.extractfile(member).read()
            files[name] = _strip_source_map(content) if name.endswith((".js", ".mjs")) else content
    return files


def main() -> None:
    """Refresh ``static/vendor/`` and its ``SHA256SUMS`` from the npm registry."""
    sums = []
    for package in PACKAGES:
        for name, content in fetch_package(package).items():
            (VENDOR_DIR / name).write_bytes(content)
            sums.append(f"{hashlib.sha256(content).hexdigest()}  {name}\n")
    CHECKSUMS.write_text("".join(sums))
    print(f"wrote {len(sums)} files to {VENDOR_DIR}")


if __name__ == "__main__":
    main()
