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
