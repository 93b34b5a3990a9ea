"""The Hub side of a model beyond the mixin: reading a model's card, publishing a model
folder, and turning the Hub client's errors into one-line messages that say what to do.

A published unet-hub repo holds exactly ``PUBLISHED_FILES``: ``config.json``,
``model.safetensors``, the model card ``README.md`` and, when training wrote one,
``training_log.csv`` and its plot ``training_curve.png`` (plus the ``.gitattributes``
the Hub creates).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    constants,
    get_hf_file_metadata,
    get_token,
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
from huggingface_hub.utils import httpx, validate_repo_id  # httpx: the client's HTTP library

from .errors import UNetHubError

CARD_NAME = "README.md"
CONFIG_NAME = constants.CONFIG_NAME
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
#: The per-epoch training log that ``unet_hub.training`` writes beside the best model.
LOG_NAME = "training_log.csv"
CURVE_NAME = "training_curve.png"
#: Published when a model folder has them: the training log and its curve.
OPTIONAL_FILES = (LOG_NAME, CURVE_NAME)
PUBLISHED_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *OPTIONAL_FILES)
#: Where the model card keeps its training facts in its YAML metadata (see model_card.md).
CARD_FACTS_KEY = "unet_hub"
#: Errors of the Hub client that ``hub_error_message`` explains.
HUB_ERRORS = (
    HfHubHTTPError,
    EntryNotFoundError,
    HFValidationError,
    OfflineModeIsEnabled,
    httpx.TransportError,
)
_LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


class HubError(UNetHubError):
    """Talking to the Hugging Face Hub failed (push, login, network)."""


# -- model cards ------------------------------------------------------------------------


def load_model_card(source: str, revision: str | None = None) -> ModelCard | None:
    """The model card of a local model folder or Hub repo, or None if it has none."""
    if os.path.isdir(source):
        path = os.path.join(source, CARD_NAME)
        return ModelCard.load(path) if os.path.isfile(path) else None
    try:
        return ModelCard.load(hf_hub_download(source, CARD_NAME, revision=revision))
    except (EntryNotFoundError, HfHubHTTPError):
        return None


def card_metrics(card: ModelCard | None) -> dict[str, float]:
    """The metrics a card's ``model-index`` records, by their display names."""
    results = (card.data.eval_results or []) if card is not None else []
    return {r.metric_name or r.metric_type: r.metric_value for r in results}


def card_eval_dataset(card: ModelCard | None) -> str | None:
    """The name of the data set a card's metrics were measured on."""
    results = (card.data.eval_results or []) if card is not None else []
    return results[0].dataset_name if results else None


def card_training(card: ModelCard | None) -> dict[str, Any] | None:
    """The training facts (data, recipe, epoch, command...) a card's metadata records."""
    facts = card.data.get(CARD_FACTS_KEY) if card is not None else None
    return facts.get("training") if isinstance(facts, dict) else None


def card_kwargs(card: ModelCard | None) -> dict[str, Any]:
    """The ``model_card_kwargs`` that rendered ``card``, read back from its metadata, so
    the card can be rendered again (e.g. naming a repo id) without losing a fact."""
    return {
        "metrics": card_metrics(card) or None,
        "eval_dataset": card_eval_dataset(card),
        "training": card_training(card),
    }


# -- publishing -------------------------------------------------------------------------


def check_push_access(repo_id: str, token: str | None = None) -> str:
    """Check, before any long work, that ``repo_id`` is a valid ``user/name`` and that the
    Hub accepts the token (``token``, else HF_TOKEN or the ``hf auth login`` one).

    Returns the token owner's user name; raises ``HubError`` saying what to do.
    """
    _check_repo_id(repo_id)
    token = _require_token(repo_id, token)
    try:
        return HfApi(token=token).whoami()["name"]
    except HUB_ERRORS as e:
        raise HubError(hub_error_message(repo_id, e, pushing=True)) from None


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> CommitInfo:
    """Publish the model saved in ``folder`` to the Hub repo ``repo_id`` in one commit.

    The repo is created if needed (``private`` applies only then) and so is the branch
    ``revision`` (default: main). The commit holds ``config.json`` and
    ``model.safetensors`` as saved, the model card re-rendered so that its usage snippets
    name ``repo_id`` (the metrics and training facts are kept), and ``training_log.csv``
    when the folder has one; a log left on the branch by an earlier push is deleted when
    the folder has none, so the repo never pairs a model with another run's log.

    Returns the commit (``.oid``, ``.commit_url``); raises ``UNetHubError`` subclasses
    with one-line messages.
    """
    folder = Path(folder)
    _check_repo_id(repo_id)
    card = _render_card(folder, repo_id)  # also checks the folder holds a loadable model
    token = _require_token(repo_id, token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            # The Hub does not create a branch on commit: create it from main first.
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = _operations(api, folder, repo_id, card, revision)
        return api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or _default_commit_message(card),
            revision=revision,
        )
    except HUB_ERRORS as e:
        raise HubError(hub_error_message(repo_id, e, revision=revision, pushing=True)) from None


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(hub_error_message(repo_id, e, pushing=True)) from None
    if "/" not in repo_id:
        # The Hub would put a bare name under the token's owner, but the card's snippets
        # need the full id.
        raise HubError(f"{repo_id}: give the full repo id, user/name (or org/name)")


def _require_token(repo_id: str, token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise HubError(
            f"{repo_id}: pushing needs a Hugging Face token with write access; {_LOGIN_HINT}"
        )
    return token


def _render_card(folder: Path, repo_id: str) -> ModelCard:
    """The folder's model card rendered again for ``repo_id``, from the model's config and
    the facts the saved card records."""
    # Imported here because model.py imports this module for its error messages.
    from .model import UNet

    if not folder.is_dir():
        raise HubError(f"{folder}: no such model folder")
    model = UNet.from_pretrained(folder)  # refuses an incomplete or inconsistent folder
    facts = card_kwargs(load_model_card(str(folder)))
    return model.generate_model_card(**facts, repo_id=repo_id)


def _operations(
    api: HfApi, folder: Path, repo_id: str, card: ModelCard, revision: str | None
) -> list[CommitOperationAdd | CommitOperationDelete]:
    """The commit: the card from memory, the other published files from the folder."""
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(CARD_NAME, str(card).encode()),
        CommitOperationAdd(CONFIG_NAME, str(folder / CONFIG_NAME)),
        CommitOperationAdd(WEIGHTS_NAME, str(folder / WEIGHTS_NAME)),
    ]
    for name in OPTIONAL_FILES:  # published when the folder has them, else removed
        if (folder / name).is_file():
            operations.append(CommitOperationAdd(name, str(folder / name)))
        elif api.file_exists(repo_id, name, revision=revision):
            operations.append(CommitOperationDelete(name))
    return operations


def _default_commit_message(card: ModelCard) -> str:
    metrics, training = card_metrics(card), card_training(card) or {}
    message = "Upload unet-hub model"
    if "validation Dice" in metrics:
        message += f" (validation Dice {metrics['validation Dice']:.4f}"
        message += f", epoch {training['epoch']})" if "epoch" in training else ")"
    return message


# -- downloads and errors ---------------------------------------------------------------


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
            f"{_LOGIN_HINT} with a token that can read it)"
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
            f"{_LOGIN_HINT} with a valid token"
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
