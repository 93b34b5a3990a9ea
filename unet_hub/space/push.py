"""``unet-hub space push MODEL user/name --kind static|gradio``: build a Space and publish
it in one commit, then link it from the model's card.

The Space repo is created with the kind's SDK (and the requested hardware, e.g. ZeroGPU,
where the Hub allows it); the commit holds exactly the built folder's files and removes
any other file an earlier push left. For a model on the Hub, the Space lists it under
``models:`` (so the model's page links to the Space) and the model's card gains a
"Try it" line pointing at the Space, when the token may write to the model repo.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from unet_hub.files import CARD_NAME
from unet_hub.hub.publish import HubError, check_push_access
from unet_hub.model.download import HUB_ERRORS, hub_error_message
from unet_hub.space.gradio_space import build_gradio_space
from unet_hub.space.static import SpaceBuildError, build_static_space, is_hub_id

KINDS = ("static", "gradio")
TRY_IT_MARKER = "**Try it:**"


@dataclass(frozen=True)
class PushedSpace:
    """A published Space: its URL, and what became of the model card's "Try it" link."""

    url: str
    card_note: str | None = None


def check_kind(kind: str, hardware: str | None) -> None:
    """Refuse an unknown kind, or hardware for a Space that runs in the browser."""
    if kind not in KINDS:
        raise SpaceBuildError(f"unknown Space kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "static" and hardware:
        raise SpaceBuildError("a static Space runs in the browser: it takes no --hardware")


def build_space(source: str | Path, out_dir: str | Path, *, kind: str, **options) -> Path:
    """Build the Space of ``kind`` ("static" or "gradio") into ``out_dir``."""
    hardware = options.pop("hardware", None)
    check_kind(kind, hardware)
    if kind == "static":
        return build_static_space(source, out_dir, **options)
    return build_gradio_space(source, out_dir, hardware=hardware)


def try_it_line(space_url: str) -> str:
    return f"{TRY_IT_MARKER} [segment your images on this Space]({space_url})"


def link_from_model_card(api: HfApi, model_repo: str, space_url: str) -> bool:
    """Add the "Try it" line to the model card of ``model_repo`` (after its title), unless
    it is there already. Returns whether a commit was made."""
    card_path = hf_hub_download(model_repo, CARD_NAME, token=api.token)
    text = Path(card_path).read_text(encoding="utf-8")
    line = try_it_line(space_url)
    if line in text:
        return False
    lines = text.splitlines(keepends=True)
    at = next((i + 1 for i, row in enumerate(lines) if row.startswith("# ")), len(lines))
    lines.insert(at, f"\n{line}\n")
    api.upload_file(
        path_or_fileobj="".join(lines).encode(),
        path_in_repo=CARD_NAME,
        repo_id=model_repo,
        commit_message=f"Model card: link the Space {space_url}",
    )
    return True


def push_space(
    source: str | Path,
    repo_id: str,
    *,
    kind: str,
    private: bool = False,
    hardware: str | None = None,
    token: str | None = None,
    **build_options,
) -> PushedSpace:
    """Build the Space of ``kind`` for ``source`` and publish it to the Space repo
    ``repo_id`` in one commit; returns its URL and, for a Hub model, whether its card
    now links to the Space. Raises ``UNetHubError`` subclasses with one-line messages."""
    check_kind(kind, hardware)
    check_push_access(repo_id, token)  # before any long work: a valid id and a token
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_space(
            source, Path(tmp) / "space", kind=kind, hardware=hardware, **build_options
        )
        try:
            url = api.create_repo(
                repo_id,
                repo_type="space",
                space_sdk=kind,
                space_hardware=hardware,
                private=private,
                exist_ok=True,
            )
            api.upload_folder(
                repo_id=repo_id,
                repo_type="space",
                folder_path=folder,
                commit_message=f"Upload a unet-hub {kind} Space",
                delete_patterns="*",  # the commit leaves exactly the built files
            )
        except HUB_ERRORS as e:
            raise HubError(hub_error_message(repo_id, e, pushing=True)) from None
    space_url = str(url)
    if not is_hub_id(source):
        return PushedSpace(space_url)
    try:
        linked = link_from_model_card(api, str(source), space_url)
    except HUB_ERRORS as e:  # e.g. someone else's model: the Space is published all the same
        reason = hub_error_message(str(source), e, pushing=True)
        return PushedSpace(space_url, f"the model card was not linked to the Space: {reason}")
    note = "the model card links to the Space" if linked else "the model card already links here"
    return PushedSpace(space_url, note)
