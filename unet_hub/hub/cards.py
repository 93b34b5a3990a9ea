"""Model cards: the facts a card records (metrics, the data they were measured on, how the
model was trained), read back from its YAML metadata."""

from __future__ import annotations

import os
import re
from typing import Any

from huggingface_hub import (
    ModelCard,
    hf_hub_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
)

from unet_hub.files import CARD_NAME

#: Where the model card keeps its training facts in its YAML metadata (see model_card.md).
CARD_FACTS_KEY = "unet_hub"


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
    data = card.data if card is not None else None
    return {
        "metrics": card_metrics(card) or None,
        "eval_dataset": card_eval_dataset(card),
        "training": card_training(card),
        "dataset_id": (data.datasets or [None])[0] if data is not None else None,
        "base_model": data.base_model if data is not None else None,
    }


def without_paths(text: str) -> str:
    """``text`` with each file path cut to its last two parts: a card may name its data
    by a path of the machine that trained the model, which a page must not show."""
    return re.sub(r"(?:\.{0,2}/)?(?:[\w.-]+/)+([\w.-]+/[\w.-]+)", r"\1", text)
