"""The Hub side of a model beyond the mixin: reading a saved model's card."""

from __future__ import annotations

import os

from huggingface_hub import ModelCard, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

CARD_NAME = "README.md"


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
