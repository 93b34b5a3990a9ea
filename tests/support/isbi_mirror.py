"""A local stand-in for the upstream ISBI 2012 PNGs, served over real HTTP.

`unet-hub fetch-data isbi2012` downloads ``train/image/N.png``, ``train/label/N.png`` and
``test/N.png`` (N = 0..29) from a pinned GitHub commit, or from the mirror named by
``UNET_HUB_DATA_URL``. Tests cannot reach GitHub, so this builds that layout from the
slices shipped in ``examples/isbi2012/`` (each reused under several numbers) and serves it
with ``http.server``, recording every request path and answering injected faults.

As a script, ``python tests/support/isbi_mirror.py PORT`` builds one in a temporary folder
and serves it until stopped (README.md's fetch block runs against it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "isbi2012"
SLICES = 30


def build_mirror(root: Path) -> Path:
    """Lay out ``root`` as upstream's ``data/membrane`` folder, from the shipped sample."""
    images = sorted((SAMPLE / "train/images").glob("*.png"))
    tests = sorted((SAMPLE / "test").glob("*.png"))
    for n in range(SLICES):
        source = images[n % len(images)]
        for folder, copied in (
            ("train/image", source),
            ("train/label", SAMPLE / "train/masks" / source.name),
            ("test", tests[n % len(tests)]),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(copied, root / folder / f"{n}.png")
    return root


@dataclass
class Fault:
    """What the mirror answers for one path instead of the file: an HTTP status, or other
    bytes (announced as ``length`` bytes: more cuts the connection mid-file); ``times``
    answers (then the file again), None for every request."""

    status: int = 200
    body: bytes | None = None
    times: int | None = None
    length: int | None = None


@dataclass
class MirrorState:
    requests: list[str] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)


class _Handler(SimpleHTTPRequestHandler):
    state: MirrorState

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.lstrip("/")
        self.state.requests.append(path)
        fault = self.state.faults.get(path)
        if fault is not None and fault.times != 0:
            if fault.times is not None:
                fault.times -= 1
            if fault.body is None:
                self.send_error(fault.status)
            else:
                self.send_response(fault.status)
                length = len(fault.body) if fault.length is None else fault.length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(fault.body)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass  # keep test output clean


class Mirror:
    """The sample mirror served on 127.0.0.1 from a thread; ``url`` is its base URL."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = build_mirror(root)
        self.state = MirrorState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", port), partial(handler, directory=str(self.root))
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    import signal

    # Stopped with SIGTERM (as the README test stops its servers): clean up the folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory() as tmp, Mirror(Path(tmp), int(sys.argv[1])) as mirror:
        print(f"serving a sample ISBI 2012 mirror at {mirror.url}", flush=True)
        mirror._thread.join()
