"""Every file and folder name the project reads or writes, in one place.

A saved model folder holds ``MODEL_FILES`` (and, after training, ``OPTIONAL_FILES``); a
training run's ``--out`` folder holds the best model, ``LAST_DIR``, ``INTERRUPTED_DIR``
after Ctrl-C, the log, the curve and the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants

#: The model's constructor arguments (the Hub mixin's name for them).
CONFIG_NAME = constants.CONFIG_NAME
#: The model's weights.
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE
#: The model card (the Hub shows a repo's README.md).
CARD_NAME = "README.md"
#: What ``save_pretrained`` writes: a complete model folder.
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)

#: The per-epoch training log written beside the best model.
LOG_NAME = "training_log.csv"
#: The training curve drawn from the log.
CURVE_NAME = "training_curve.png"
#: Published with a model when its folder has them.
OPTIONAL_FILES = (LOG_NAME, CURVE_NAME)

#: The resumable state of a training run, rewritten at the end of every epoch.
CHECKPOINT_NAME = "checkpoint.safetensors"
#: The last epoch's model, inside a run folder.
LAST_DIR = "last"
#: The model as it was when a run was interrupted (Ctrl-C), inside a run folder.
INTERRUPTED_DIR = "interrupted"

#: The card template shipped inside the package.
MODEL_CARD_TEMPLATE = "model_card.md"
PACKAGE_DIR = Path(__file__).resolve().parent
#: The model the app serves by default, shipped inside the package.
BUNDLED_MODEL = PACKAGE_DIR / "pretrained" / "isbi2012"
#: The app's example images (in the repository and in a Space, not in the wheel).
EXAMPLES_DIR = PACKAGE_DIR.parent / "examples" / "isbi2012" / "test"

#: The per-object table of a `predict --instances` run (and of the app's batch download).
OBJECTS_NAME = "objects.csv"
#: A label image is named after its mask: ``<stem>_labels.png`` beside ``<stem>.png``.
LABELS_SUFFIX = "_labels"

#: Written by `unet-hub fetch-data` into the data folder: where the files come from, their
#: licence and what to cite.
DATA_ATTRIBUTION_NAME = "ATTRIBUTION.md"
