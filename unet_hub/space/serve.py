"""Serve a built Space folder on this machine as a Space would: its files, with the
``custom_headers`` its README's front matter declares (``isolation=False`` leaves them
out, to see the page without cross-origin isolation). For previews, tests and benchmarks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from huggingface_hub import metadata_load

#: Types Python's table may lack; a module worker and WebAssembly need the right ones.
EXTRA_TYPES = {
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}


def space_headers(folder: str | Path) -> dict[str, str]:
    """The ``custom_headers`` of the Space in ``folder`` (from its README.md)."""
    meta = metadata_load(Path(folder) / "README.md") or {}
    return {str(k): str(v) for k, v in (meta.get("custom_headers") or {}).items()}


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **EXTRA_TYPES}

    def __init__(self, *args, headers: dict[str, str], **kwargs) -> None:
        self.space_headers = headers
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        for key, value in self.space_headers.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def serve_space(folder: str | Path, *, port: int = 0, isolation: bool = True) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 for the ``with`` block; yields the page's URL."""
    headers = space_headers(folder) if isolation else {}
    handler = functools.partial(_Handler, directory=str(folder), headers=headers)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
