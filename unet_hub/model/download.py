"""Fetching a model's files from a local folder or a Hub repo, and the Hub client's errors
as one line that says what to do (for downloads here, for pushes in ``unet_hub.hub``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from huggingface_hub import (
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import httpx  # httpx: the client's HTTP library

from unet_hub.errors import ModelLoadError

#: Errors of the Hub client that ``hub_error_message`` explains.
HUB_ERRORS = (
    HfHubHTTPError,
    EntryNotFoundError,
    HFValidationError,
    OfflineModeIsEnabled,
    httpx.TransportError,
)


LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


def fail_fast_if_unreachable(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    **_: Any,
) -> None:
    """Raise the client's connection error at once when ``filename`` of ``repo_id`` has to
    be downloaded and the Hub cannot be reached.

    ``hf_hub_download`` retries such a download with back-off for about 25 s before it
    gives up; one HEAD request without retries tells the same thing in milliseconds. A
    cached file needs no check: the client falls back to it without retrying. Takes
    ``from_pretrained``'s keywords and ignores those that are not about downloading.
    """
    if local_files_only or constants.is_offline_mode():
        return
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    if isinstance(cached, str) and not force_download:
        return
    with contextlib.suppress(HfHubHTTPError):  # the Hub answered: the download reports it
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), token=token)


def hub_error_message(
    repo_id: str,
    error: Exception,
    *,
    filename: str | None = None,
    revision: str | None = None,
    pushing: bool = False,
) -> str:
    """One line saying why a Hub request about ``repo_id`` failed, and what to do.

    ``error`` is one of ``HUB_ERRORS``; ``filename`` is the file being downloaded;
    ``pushing`` says the request was part of a push.
    """
    what = filename or "the model"
    if isinstance(error, HFValidationError):
        if pushing:
            return f"{repo_id}: not a valid Hub repo id (user/name)"
        return f"{repo_id}: no such model folder, and not a valid Hub repo id (user/name)"
    # A LocalEntryNotFoundError without a cause, or caused by offline mode, comes from a
    # look-up of the cache alone; else from a failed request.
    cache_only = isinstance(error, LocalEntryNotFoundError) and (
        error.__cause__ is None or isinstance(error.__cause__, OfflineModeIsEnabled)
    )
    if isinstance(error, OfflineModeIsEnabled) or cache_only:
        if pushing:
            return f"{repo_id}: cannot push in offline mode; unset HF_HUB_OFFLINE"
        return (
            f"{repo_id}: {what} is not in the local Hub cache and downloads are off "
            "(HF_HUB_OFFLINE=1 or local_files_only); load the model once while online"
        )
    if isinstance(error, (LocalEntryNotFoundError, httpx.TransportError)):
        # A download raises LocalEntryNotFoundError, caused by the connection error, when
        # the Hub cannot be reached and the cache has no copy.
        reason = _first_line(error.__cause__ or error)
        unreachable = f"the Hub at {constants.ENDPOINT} cannot be reached ({reason})"
        if pushing:
            return f"{repo_id}: {unreachable}; check your connection, proxy or HF_ENDPOINT"
        return (
            f"{repo_id}: not a local folder, {unreachable} and {what} is not in the local "
            "cache; check the path, your connection, proxy or HF_ENDPOINT"
        )
    if isinstance(error, GatedRepoError):
        return f"{repo_id}: the repo is gated; request access on the Hub, then log in"
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"{repo_id}: no such model folder or Hub repo (if the repo is private, "
            f"{LOGIN_HINT} with a token that can read it)"
        )
    if isinstance(error, RevisionNotFoundError):
        rev = revision or constants.DEFAULT_REVISION
        return f"{repo_id}: no revision {rev!r} on the Hub (give a branch name or a commit sha)"
    if isinstance(error, EntryNotFoundError):
        return f"{repo_id}: the repo has no {what}; it is not a unet-hub model"
    status = _status(error)
    if status == 401:
        return (
            f"{repo_id}: the Hub did not accept your token ({_server_message(error)}); "
            f"{LOGIN_HINT} with a valid token"
        )
    if status == 403 and pushing:
        return (
            f"{repo_id}: your token may not write to this repo ({_server_message(error)}); "
            "push to a namespace you own, or use a token with write access"
        )
    action = "push to" if pushing else f"download {what} from"
    return f"{repo_id}: cannot {action} the Hub (HTTP {status}: {_server_message(error)})"


def _status(error: Exception) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


def _server_message(error: Exception) -> str:
    """The Hub's own short explanation of an HTTP error, else the client's first line."""
    return getattr(error, "server_message", None) or _first_line(error)


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def fetch(model_id: str, filename: str, **hub_kwargs: Any) -> str:
    """Path of ``filename`` in a local model folder, or downloaded from a Hub repo."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if not os.path.isfile(path):
            raise ModelLoadError(
                f"{model_id}: no {filename} in this folder; it is not a complete unet-hub model"
            )
        return path
    if os.path.exists(model_id):
        raise ModelLoadError(f"{model_id} is a file; give the model's folder or a Hub repo id")
    try:
        return hf_hub_download(repo_id=model_id, filename=filename, **hub_kwargs)
    except HUB_ERRORS as e:
        message = hub_error_message(
            model_id, e, filename=filename, revision=hub_kwargs.get("revision")
        )
        raise ModelLoadError(message) from None


def looks_like_a_path(name: str) -> bool:
    """True for names that can only be meant as local paths, not as Hub repo ids."""
    parent = os.path.dirname(name)
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or os.sep in name.replace("/", "", 1)
        or (parent not in ("", ".") and os.path.isdir(parent))
    )
