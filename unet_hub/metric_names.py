"""The display names of the metrics, as tables, logs, model cards and the app show them.

Model cards store metrics by these names (in their ``model-index``), and the app and the
Hub read them back by the same names, so each is written here once.
"""

DICE = "Dice"
IOU = "IoU"
PIXEL_ERROR = "pixel error (1 - accuracy)"
CHALLENGE_PIXEL_ERROR = "challenge pixel error (1 - max F)"
RAND_ERROR = "adapted Rand error"
VI = "variation of information"
#: How the names of the scores after border thinning say so.
THINNED = "(thinned borders)"

TRAIN_LOSS = "training loss (epoch mean)"
VALIDATION = "validation"
VAL_LOSS = f"{VALIDATION} loss"
VAL_DICE = f"{VALIDATION} {DICE}"
VAL_IOU = f"{VALIDATION} {IOU}"
VAL_PIXEL_ERROR = f"{VALIDATION} {PIXEL_ERROR}"


def per_class(metric: str, label: str) -> str:
    """The name of a per-class score, e.g. ``Dice (cell interior)``."""
    return f"{metric} ({label})"


def on_validation(metric: str) -> str:
    """The name of a score measured on the validation data."""
    return f"{VALIDATION} {metric}"


def headline_scores(card_metrics: dict[str, float]) -> dict[str, float]:
    """The scores a page shows of a model card's metrics, named without "validation":
    Dice and IoU of each class, pixel error and adapted Rand error at the model's
    threshold (not the thinned or swept ones; the card has them all)."""
    scores = {k.removeprefix(f"{VALIDATION} "): v for k, v in card_metrics.items()}
    return {k: v for k, v in scores.items() if _is_headline(k)}


def _is_headline(name: str) -> bool:
    per_class = name.startswith((f"{DICE} (", f"{IOU} ("))
    return per_class or name in (PIXEL_ERROR, RAND_ERROR)
