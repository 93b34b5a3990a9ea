"""``unet-hub space build MODEL OUT --kind gradio``: a Gradio Space serving the model with
the project's app, on ZeroGPU (``unet_hub.app.zerogpu``) or on a CPU.

The folder holds ``app.py`` (which names the model in ``UNET_MODEL`` and launches the
app), the ``unet_hub`` package's source, the example images, the model itself when it is
a local folder (a Hub model is downloaded by the Space), ``requirements.txt`` (the
package's own requirements: ONNX Runtime for the CPU fast path, ``spaces`` for ZeroGPU)
and a README whose front matter ZeroGPU accepts (Python 3.12, the pinned Gradio).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from unet_hub.files import BUNDLED_MODEL, EXAMPLES_DIR, MODEL_FILES, OPTIONAL_FILES, PACKAGE_DIR
from unet_hub.model.unet import UNet
from unet_hub.space.static import (
    README,
    is_hub_id,
    model_label,
    prepare_out_dir,
    space_readme,
)

APP_FILE = "app.py"
REQUIREMENTS_FILE = "requirements.txt"
#: Where a local model folder goes in the Space.
MODEL_FOLDER = "model"
#: ZeroGPU runs Python 3.10.13 and 3.12.12 only (Spaces ZeroGPU docs, July 2026).
PYTHON_VERSION = "3.12"
#: The Space hardware for ZeroGPU (``huggingface_hub.SpaceHardware.ZERO_A10G``).
ZERO_GPU_HARDWARE = "zero-a10g"
DISTRIBUTION = "unet-hub"

APP_TEMPLATE = '''"""unet-hub on a Hugging Face Space, written by `unet-hub space build`.

Serves {label} with the unet-hub app: on ZeroGPU the network runs on the Space's GPU,
elsewhere with ONNX Runtime on the CPU. Set the UNET_MODEL variable to serve another.
"""

import os
import sys

if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  (ZeroGPU: imported before torch touches CUDA)

{model_line}
from unet_hub.app.webapp import launch  # noqa: E402
from unet_hub.errors import UNetHubError  # noqa: E402

if __name__ == "__main__":
    try:
        launch()
    except UNetHubError as e:
        sys.exit(f"error: {{e}}")
'''


def runtime_requirements() -> list[str]:
    """The package's own requirements (``requirements.txt``), as installed."""
    requires = importlib.metadata.requires(DISTRIBUTION) or []
    return [r for r in requires if "extra ==" not in r]


def gradio_version() -> str:
    """The Gradio the package pins, for the Space's ``sdk_version``."""
    for requirement in runtime_requirements():
        name, _, version = requirement.partition("==")
        if name.strip().lower() == "gradio" and version:
            return version.strip()
    return importlib.metadata.version("gradio")


def _copy_package(out: Path, with_bundled_model: bool) -> None:
    """The ``unet_hub`` source the app imports (not the static page, not caches)."""
    ignore = ["__pycache__", "*.pyc", "static"]
    if not with_bundled_model:
        ignore.append("pretrained")
    shutil.copytree(PACKAGE_DIR, out / PACKAGE_DIR.name, ignore=shutil.ignore_patterns(*ignore))


def _copy_model(source: Path, out: Path) -> None:
    target = out / MODEL_FOLDER
    target.mkdir()
    for name in (*MODEL_FILES, *OPTIONAL_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def gradio_readme(source: str | Path, hardware: str | None) -> str:
    body = (
        "# U-Net segmentation\n\n"
        f"Segments images with {model_label(source)}, served by the unet-hub Gradio app: "
        "on ZeroGPU the network runs on the Space's GPU, on a CPU Space through ONNX "
        "Runtime.\n\nBuilt by `unet-hub space build --kind gradio`.\n"
    )
    extra = {"suggested_hardware": hardware} if hardware else {}
    return space_readme(
        source,
        body,
        sdk="gradio",
        sdk_version=gradio_version(),
        python_version=PYTHON_VERSION,
        app_file=APP_FILE,
        **extra,
    )


def build_gradio_space(
    source: str | Path, out_dir: str | Path, *, hardware: str | None = None
) -> Path:
    """Write a Gradio Space serving the model ``source`` (a folder or a Hub repo id) into
    ``out_dir`` (new or empty, or an earlier build's) and return it. ``hardware`` (e.g.
    ``"zero-a10g"``) is recorded as the README's ``suggested_hardware``."""
    UNet.from_pretrained(str(source))  # refuses a missing or broken model now, not on the Space
    out = prepare_out_dir(out_dir, APP_FILE)
    bundled = not is_hub_id(source) and Path(source).resolve() == BUNDLED_MODEL
    if bundled:
        served = None  # the app's default model
    elif is_hub_id(source):
        served = str(source)
    else:
        _copy_model(Path(source), out)
        served = MODEL_FOLDER
    _copy_package(out, with_bundled_model=bundled)
    if EXAMPLES_DIR.is_dir():
        shutil.copytree(
            EXAMPLES_DIR, out / EXAMPLES_DIR.relative_to(PACKAGE_DIR.parent), dirs_exist_ok=True
        )
    label = model_label(source)
    model_line = f'os.environ.setdefault("UNET_MODEL", {served!r})\n' if served else ""
    (out / APP_FILE).write_text(APP_TEMPLATE.format(label=label, model_line=model_line))
    (out / REQUIREMENTS_FILE).write_text("\n".join(runtime_requirements()) + "\n")
    (out / README).write_text(gradio_readme(source, hardware))
    return out
