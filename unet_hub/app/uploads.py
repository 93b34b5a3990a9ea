"""The upload guard: the app reads only files that Gradio stored for it, or its examples.

The app's events skip Gradio's preprocessing (which opens the upload with PIL and fails
with a generic error on a bad file), so the payload reaches the handler as the client
sent it. A payload can name any path, so every handler passes it through
``uploaded_file``: a file is read only when its real path (symlinks resolved) lies inside
Gradio's upload folder or the shipped examples. The refusal is the same whether the path
exists or not, so the app cannot be used to probe the server's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder

from unet_hub.errors import UNetHubError
from unet_hub.files import EXAMPLES_DIR

NO_IMAGE = "Drop, paste or upload an image first."
NOT_UPLOADED = "This file was not uploaded to this app; upload the image and try again."


class UploadRefused(UNetHubError):
    """A payload names no file that this app stored or ships (one message for all cases)."""


def allowed_folders() -> tuple[Path, ...]:
    """Where the app may read files from: Gradio's upload folder and the examples."""
    return (Path(get_upload_folder()).resolve(), EXAMPLES_DIR.resolve())


def _payload_path(payload: Any) -> str | None:
    """The ``path`` of a file payload (a FileData dict or object); None for anything else,
    plain strings included: a client may not name a server path directly."""
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    return path if isinstance(path, str) and path and "\x00" not in path else None


def uploaded_file(payload: Any, folders: Sequence[Path] | None = None) -> Path:
    """The real path of the uploaded file that ``payload`` names, if it lies inside
    ``folders`` (default: ``allowed_folders()``) and is a file.

    Raises ``UploadRefused`` with ``NO_IMAGE`` for an empty payload and with the one
    message ``NOT_UPLOADED`` for everything else, existing or not.
    """
    if payload is None or payload == "" or payload == {}:
        raise UploadRefused(NO_IMAGE)
    path = _payload_path(payload)
    if path is None:
        raise UploadRefused(NOT_UPLOADED)
    try:
        real = Path(path).resolve()
        inside = any(real.is_relative_to(folder) for folder in folders or allowed_folders())
        if inside and real.is_file():
            return real
    except (OSError, ValueError, RuntimeError):  # loops of links, names too long
        pass
    raise UploadRefused(NOT_UPLOADED)
