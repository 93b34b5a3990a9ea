"""The ``unet-hub`` command line: train, predict, evaluate, export, push, fetch-data, space.

Each sub-command parses its arguments, calls one library function and reports the
result; a ``UNetHubError`` is shown as one ``error:`` line, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unet_hub.data.mask_values import MASK_FORMATS
from unet_hub.errors import UNetHubError
from unet_hub.files import LAST_DIR
from unet_hub.train.options import (
    GROUPS,
    OPTIONS,
    RENAMED_VALUES,
    Option,
    TrainConfig,
    iter_options,
)

if typing.TYPE_CHECKING:
    from unet_hub.infer.instances import InstanceOptions
    from unet_hub.model.config import UNetConfig

PROG = "unet-hub"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, argparse.SUPPRESS) or action.required:
            return action.help
        return super()._get_help_string(action)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per training option, in one argument group per concern. Options
    not given on the command line are left out of the parsed namespace (SUPPRESS), so
    "given" means given, also when a value equals its default."""
    groups = {attr: parser.add_argument_group(title) for attr, title in GROUPS}
    for option in iter_options():
        groups[option.group].add_argument(
            "--" + option.name.replace("_", "-"), **_option_kwargs(option)
        )


def _option_kwargs(option: Option) -> dict[str, Any]:
    hint = option.type
    args = typing.get_args(hint)
    if type(None) in args or isinstance(hint, types.UnionType):
        hint = next(a for a in args if a is not type(None))
    help_text = option.help
    if option.default is not None:
        shown = option.default
        if isinstance(shown, bool):
            shown = "on" if shown else "off"
        help_text += f" (default: {shown})"
    if option.resumable:
        help_text += " [may change on --resume]"
    kwargs: dict[str, Any] = {"help": help_text, "dest": option.name, "default": argparse.SUPPRESS}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        parse = _mask_value if typing.get_origin(item) is tuple else item
        kwargs.update(nargs="+", type=parse)
    else:
        kwargs["type"] = _renamed(option.name, hint) if option.name in RENAMED_VALUES else hint
    if option.choices:
        kwargs["choices"] = option.choices
    return kwargs


def _mask_value(text: str) -> tuple[int, ...]:
    """``--mask-values``: a grey level (``127``) or an R,G,B colour (``255,0,0``)."""
    from unet_hub.data.mask_values import parse_mask_value

    try:
        return parse_mask_value(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _renamed(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An option value parser that accepts the old spelling of a value, with a note."""

    def parse(text: str) -> Any:
        new = RENAMED_VALUES[name].get(text)
        if new is None:
            return convert(text)
        flag = "--" + name.replace("_", "-")
        print(f"note: {flag} {text} is now called {flag} {new}", file=sys.stderr)
        return new

    return parse


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options of a sub-command that runs a saved model."""
    parser.add_argument("model", help="a saved model folder or a Hugging Face Hub repo id")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="foreground probability threshold (default: the model's recommended one)",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument(
        "--revision", default=None, help="Hub branch or commit sha of the model (default: main)"
    )


def _max_pixels(text: str) -> int | None:
    """``--max-pixels``: a pixel count, 0 for no limit (None)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return value or None


def _add_max_pixels_option(parser: argparse.ArgumentParser) -> None:
    from unet_hub.data.images import DEFAULT_MAX_PIXELS

    parser.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse an image (or mask) of more than N pixels, from its header, before "
        "decoding it; 0 = no limit (Pillow still refuses headers over about 179 megapixels)",
    )


@contextlib.contextmanager
def _max_pixels_hint():
    """Say in the error of an image over the pixel limit which flag raises the limit."""
    from unet_hub.data.images import PixelLimitError

    try:
        yield
    except PixelLimitError as e:
        raise PixelLimitError(
            f"{e}, or raise the limit with --max-pixels {e.pixels} (0 = no limit)",
            e.pixels,
            e.limit,
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The full ``unet-hub`` parser with its sub-commands."""
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a U-Net on image/mask pairs", formatter_class=fmt)
    _add_train_options(train)
    train.set_defaults(handler=_train)

    predict = sub.add_parser("predict", help="write a mask PNG for each image", formatter_class=fmt)
    _add_model_options(predict)
    _add_predict_options(predict)
    _add_max_pixels_option(predict)
    predict.set_defaults(handler=_predict)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model on image/mask pairs (Dice, IoU, pixel errors, Rand, VI)",
        formatter_class=fmt,
    )
    _add_model_options(evaluate)
    evaluate.add_argument(
        "--data", required=True, help="data folder of image/mask pairs, laid out as for training"
    )
    evaluate.add_argument(
        "--slices",
        default=None,
        help="only these files, by stem: e.g. 25-29 or 3,7,10-12 (as train's --val-slices); "
        "default: all",
    )
    evaluate.add_argument("--out", type=Path, default=None, help="also write the metrics as JSON")
    evaluate.add_argument(
        "--tta", action="store_true", help="average over the four flips (test-time augmentation)"
    )
    evaluate.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images and masks to this square size first, as train's --image-size",
    )
    _add_instance_options(
        evaluate,
        "also score the objects (one-class models): Rand and VI (default: when the model "
        "recommends a watershed or a minimum object size)",
    )
    _add_max_pixels_option(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    export = sub.add_parser(
        "export", help="write the model as an ONNX file (float32, or int8)", formatter_class=fmt
    )
    export.add_argument("model", help="a saved model folder or a Hugging Face Hub repo id")
    export.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    export.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantization: faster, the output changes slightly",
    )
    export.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help="a few training images to calibrate int8 on (needed with --int8)",
    )
    export.set_defaults(handler=_export)

    push = sub.add_parser(
        "push", help="publish a saved model folder to the Hugging Face Hub", formatter_class=fmt
    )
    push.add_argument("model_dir", type=Path, help="a saved model folder, e.g. a training --out")
    push.add_argument("repo_id", help="the Hub repo to publish to, user/name or org/name")
    push.add_argument(
        "--private", action="store_true", help="create the repo private (if it does not exist)"
    )
    push.add_argument(
        "--revision", default=None, help="branch to commit to, created if new (default: main)"
    )
    push.add_argument("--commit-message", default=None, help="default: names the Dice and epoch")
    push.add_argument(
        "--token",
        default=None,
        help="Hub token with write access (default: HF_TOKEN, else the `hf auth login` one)",
    )
    push.set_defaults(handler=_push)
    _add_fetch_command(sub, fmt)
    from unet_hub.space.cli import add_space_command

    add_space_command(sub, fmt)  # unet-hub space build|push (unet_hub/space/cli.py)
    return parser


def _add_fetch_command(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    from unet_hub.data.fetch import DATASETS, RETRIES

    fetch = sub.add_parser(
        "fetch-data",
        help="download a public data set (ISBI 2012) into the layout training reads",
        description="Download a public data set, check every file and lay it out as "
        "DIR/train/images, DIR/train/masks and DIR/test/images, with its source, licence and "
        "citations in DIR/ATTRIBUTION.md. Needs internet access to GitHub, or UNET_HUB_DATA_URL "
        "set to a mirror of the same files. A re-run downloads only what is missing.",
        formatter_class=fmt,
    )
    fetch.add_argument("dataset", choices=tuple(DATASETS), help="the data set")
    fetch.add_argument("folder", type=Path, metavar="DIR", help="where to put it")
    fetch.add_argument(
        "--retries",
        type=_whole_number,
        default=RETRIES,
        metavar="N",
        help="try a failed download N more times (network errors, HTTP 5xx), waiting longer "
        "each time",
    )
    fetch.set_defaults(handler=_fetch_data)


def _given_train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given on the command line (and only those)."""
    return {k: v for k, v in vars(args).items() if k in OPTIONS}


def train_config(argv: Sequence[str]) -> TrainConfig:
    """The ``TrainConfig`` of a ``unet-hub train`` / ``train.py`` command line (its
    options, without the command), for scripts that call ``train`` directly."""
    args = build_parser().parse_args(["train", *argv])
    return TrainConfig.from_options(_given_train_options(args))


def _train(args: argparse.Namespace) -> int:
    from unet_hub.train.loop import resume_config, train

    given = _given_train_options(args)
    if given.get("resume"):
        cfg = resume_config(given["resume"], given)
    elif not given.get("data") or not given.get("out"):
        print("error: train needs --data and --out (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    elif given.get("recipe") == "auto":
        from unet_hub.train.recipe import auto_config

        cfg, choice, profile = auto_config(given)
        print(f"--recipe auto: {profile.describe()}\n{choice.summary()}", flush=True)
    else:
        cfg = TrainConfig.from_options(given)
    result = train(cfg, command=_command_line())
    if not result.main:
        return 0  # the main process reports for all
    best = result.best
    summary = f"best epoch {result.best_epoch}"
    if best.val_dice is not None:
        summary += f": validation Dice {best.val_dice:.4f}, IoU {best.val_iou:.4f}"
    print(f"{summary}\nbest model: {result.out}/  (last epoch: {result.out}/{LAST_DIR}/)")
    if result.evaluation is not None:
        print(f"\nthe best model on the validation data:\n{result.evaluation.table()}")
    if result.commit is not None:
        print(f"pushed to {cfg.output.push_to_hub}: {result.commit.commit_url}")
    return 0


def _add_predict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="+", metavar="PATH", help="image files, folders or glob patterns"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the masks (input names mirrored)"
    )
    parser.add_argument(
        "--recursive", action="store_true", help="also take images in sub-folders ('**' globs)"
    )
    parser.add_argument(
        "--mask-format",
        choices=MASK_FORMATS,
        default="values",
        help="values: masks in the values the model was trained with (255 = foreground, or "
        "each class's grey level or colour); ids: class ids (0/1 for one class)",
    )
    _add_instance_options(
        parser,
        "also write <name>_labels.png (16-bit object ids, 0 = background) and objects.csv",
    )


def _whole_number(text: str) -> int:
    """A whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number (0 or more): {text!r}")
    return int(text)


def _pixel_count(text: str) -> int:
    """``--min-size``: a whole number of pixels, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number of pixels (0 or more): {text!r}")
    return int(text)


def _add_instance_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--instances", action="store_true", help=what)
    parser.add_argument(
        "--watershed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="split touching objects (implies --instances); default: as the model recommends",
    )
    parser.add_argument(
        "--min-size",
        type=_pixel_count,
        default=None,
        metavar="N",
        help="drop objects of fewer than N pixels (implies --instances when above 0); "
        "default: as the model recommends",
    )


def _instance_options(
    args: argparse.Namespace, config: UNetConfig, by_default: bool = False
) -> InstanceOptions | None:
    """The object options of a command line, defaulting to what the model recommends;
    None without --instances (or an option that implies it), unless ``by_default``."""
    from unet_hub.infer.instances import InstanceOptions

    asked = args.instances or args.watershed or (args.min_size or 0) > 0
    if not (asked or by_default):
        return None
    watershed = config.watershed if args.watershed is None else args.watershed
    min_size = config.min_size if args.min_size is None else args.min_size
    if not asked and not (watershed or min_size > 0):
        return None  # the recommended post-processing was turned off: plain scores only
    return InstanceOptions(watershed=watershed, min_size=min_size)


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from unet_hub.data.images import PixelLimitError
    from unet_hub.files import OBJECTS_NAME
    from unet_hub.infer.batch import find_images, plan_jobs, run_batch
    from unet_hub.infer.segment import resolve_device
    from unet_hub.model.unet import UNet

    found, failed = find_images(args.images, recursive=args.recursive, exclude=args.out)
    for arg, problem in failed:
        print(f"error: {arg}: {problem}", file=sys.stderr)
    jobs = plan_jobs(found, args.out)
    if not jobs:
        raise UNetHubError("no images to segment; name image files, folders or glob patterns")
    device = str(resolve_device(args.device))
    model = UNet.from_pretrained(args.model, map_location=device, revision=args.revision)
    instances = _instance_options(args, model.config)
    run = run_batch(
        model,
        jobs,
        args.out,
        threshold=args.threshold,
        max_pixels=args.max_pixels,
        instances=instances,
        mask_format=args.mask_format,
    )
    for outcome in tqdm(run, total=len(jobs), unit="image", disable=None, file=sys.stderr):
        source, error = outcome.job.source, outcome.error
        if error is None:
            objects = "" if outcome.objects is None else f" ({outcome.objects} objects)"
            tqdm.write(f"{source} -> {outcome.job.mask}{objects}")
            continue
        message = str(error) if isinstance(error, UNetHubError) else f"{source}: failed: {error!r}"
        if isinstance(error, PixelLimitError):
            message += f", or raise the limit with --max-pixels {error.pixels} (0 = no limit)"
        tqdm.write(f"error: {message}", file=sys.stderr)
        failed.append((str(source), message))
    if instances is not None:
        print(f"objects: {args.out / OBJECTS_NAME}")
    if failed:
        print(f"{len(failed)} failed (listed above):", file=sys.stderr)
        for name, _ in failed:
            print(f"  {name}", file=sys.stderr)
    return 1 if failed else 0


def _evaluate(args: argparse.Namespace) -> int:
    from unet_hub.data.pairs import find_pairs, select_stems
    from unet_hub.evaluate.evaluator import evaluate_pairs
    from unet_hub.evaluate.seen import seen_note
    from unet_hub.infer.segment import resolve_device
    from unet_hub.model.unet import UNet

    device = str(resolve_device(args.device))
    model = UNet.from_pretrained(args.model, map_location=device, revision=args.revision)
    pairs = find_pairs(args.data)
    if args.slices:
        pairs, _ = select_stems(pairs, args.slices)
    with _max_pixels_hint():
        evaluation = evaluate_pairs(
            model,
            pairs,
            image_size=args.image_size,
            threshold=args.threshold,
            tta=args.tta,
            max_pixels=args.max_pixels,
            # a model that recommends object post-processing is scored with it too,
            # so evaluate prints the figures its card gives
            instances=_instance_options(args, model.config, model.config.recommends_objects),
        )
    print(evaluation.table())
    note = seen_note(args.model, [image for image, _ in pairs])
    if note:
        print(note)
    if args.out is not None:
        print(f"metrics: {evaluation.write_json(args.out)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from unet_hub.infer.export import INT8_CHANGE_METADATA_KEY, export_onnx
    from unet_hub.infer.runners import read_onnx_metadata

    path = export_onnx(args.model, args.onnx, int8=args.int8, calibration_images=args.calibration)
    print(f"wrote {path}")
    change = read_onnx_metadata(path).get(INT8_CHANGE_METADATA_KEY)
    if change:
        print(f"int8 change on the calibration images: {change}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from unet_hub.hub.publish import push_model_folder

    commit = push_model_folder(
        args.model_dir,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        token=args.token,
    )
    print(f"pushed {args.model_dir} to {args.repo_id} ({args.revision or 'main'}): {commit.oid}")
    print(commit.commit_url)
    return 0


def _fetch_data(args: argparse.Namespace) -> int:
    from unet_hub.data.fetch import fetch_dataset

    print(fetch_dataset(args.dataset, args.folder, retries=args.retries).summary())
    return 0


#: The options whose values are paths of this machine, and what a recorded command shows
#: in their place (a model card must not name the trainer's folders).
PATH_PLACEHOLDERS = {"--data": "DATA", "--val-data": "VAL_DATA", "--out": "OUT", "--resume": "RUN"}


def recorded_command(argv: Sequence[str]) -> str:
    """The command line as a model card records it: local paths become placeholders
    (``--data DATA``); an ``--init-from`` or ``--teacher`` folder becomes its own name."""
    words = [Path(argv[0]).name]
    args = list(argv[1:])
    for i, word in enumerate(args):
        flag, eq, value = word.partition("=")
        previous = args[i - 1] if i else ""
        if eq and flag in PATH_PLACEHOLDERS:
            word = f"{flag}={PATH_PLACEHOLDERS[flag]}"
        elif previous in PATH_PLACEHOLDERS:
            word = PATH_PLACEHOLDERS[previous]
        elif previous in ("--init-from", "--teacher") and Path(word).exists():
            word = Path(word).name
        words.append(word)
    return shlex.join(words)


def _command_line() -> str:
    return recorded_command(sys.argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UNetHubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
