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
#: How the names of the scores of objects (after the model's post-processing) say so:
#: ``adapted Rand error, objects by watershed``.
OBJECTS_BY = ", objects by "

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
    Dice and IoU of each class, pixel error, the challenge's pixel error, and the adapted
    Rand error strict, after border thinning (as the ISBI challenge ranks) and with the
    objects the model recommends, all at the model's threshold (not the swept ones; the
    card has them all)."""
    scores = {k.removeprefix(f"{VALIDATION} "): v for k, v in card_metrics.items()}
    return {k: v for k, v in scores.items() if _is_headline(k)}


def scores_text(scores: dict[str, float]) -> str:
    """Scores as a page shows them in a line: ``Dice 0.9519, IoU 0.9082``."""
    return ", ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in scores.items()
    )


def _is_headline(name: str) -> bool:
    # Dice and IoU per class, or their mean when the card has that instead
    overlap = name.startswith((f"{DICE} (", f"{IOU} (")) or name in (DICE, IOU)
    rand = (RAND_ERROR, f"{RAND_ERROR} {THINNED}")
    objects = name.startswith(rand) and OBJECTS_BY in name
    # the challenge's pixel error is at its own best threshold, which its name gives
    challenge = name.startswith(CHALLENGE_PIXEL_ERROR)
    return overlap or objects or challenge or name in (PIXEL_ERROR, *rand)


def of_objects(metric: str, how: str) -> str:
    """The name of a score of the objects made ``how`` (e.g. "watershed")."""
    return f"{metric}{OBJECTS_BY}{how}"
