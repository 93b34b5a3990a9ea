"""Publishing a model folder to the Hub: one commit of the model's files and its card.

A published unet-hub repo holds exactly ``files.MODEL_FILES`` (``config.json``,
``model.safetensors`` and the model card ``README.md``) and, when training wrote them,
``files.OPTIONAL_FILES`` (the training log and its curve), plus the ``.gitattributes``
the Hub creates. The Hub client's errors become one-line messages that say what to do.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    constants,
    get_token,
)
from huggingface_hub.errors import (
    HFValidationError,
)
from huggingface_hub.utils import validate_repo_id  # httpx: the client's HTTP library

from unet_hub import metric_names
from unet_hub.errors import UNetHubError
from unet_hub.files import CARD_NAME, CONFIG_NAME, OPTIONAL_FILES, WEIGHTS_NAME
from unet_hub.hub.cards import card_kwargs, card_metrics, card_training, load_model_card
from unet_hub.model.download import HUB_ERRORS, LOGIN_HINT, hub_error_message
from unet_hub.model.unet import UNet


class HubError(UNetHubError):
    """Talking to the Hugging Face Hub failed (push, login, network)."""


# -- model cards ------------------------------------------------------------------------


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
            f"{repo_id}: pushing needs a Hugging Face token with write access; {LOGIN_HINT}"
        )
    return token


def _render_card(folder: Path, repo_id: str) -> ModelCard:
    """The folder's model card rendered again for ``repo_id``, from the model's config and
    the facts the saved card records."""
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
    if metric_names.VAL_DICE in metrics:
        message += f" ({metric_names.VAL_DICE} {metrics[metric_names.VAL_DICE]:.4f}"
        message += f", epoch {training['epoch']})" if "epoch" in training else ")"
    return message


# -- downloads and errors ---------------------------------------------------------------
