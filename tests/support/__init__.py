"""Test helpers for unet-hub (a local, Hub-compatible HTTP server: see `hub_server`)."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClosingPort:
    """A port on 127.0.0.1 that accepts each connection and closes it at once (a reset),
    counting them: a Hub that cannot be reached, whose connection attempts a test can
    count instead of timing the client's retries."""

    def __init__(self) -> None:
        import threading

        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import struct

        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            # linger 0: close with a reset, as a dead service behind a live host does
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> "ClosingPort":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
