"""The ``unet-hub`` command line: ``train``, ``predict``, ``evaluate`` and ``push``.

Each sub-command parses its arguments, calls one library function and reports the
result; a ``UNetHubError`` is shown as one ``error:`` line, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from unet_hub.errors import UNetHubError

if typing.TYPE_CHECKING:
    from unet_hub.train.loop import TrainConfig

PROG = "unet-hub"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show an option's default unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--option`` per dataclass field, with its type, default and help text."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        if optional or isinstance(hint, types.UnionType):
            hint = next(a for a in args if a is not type(None))
        kwargs: dict = {"help": f.metadata.get("help", ""), "dest": f.name}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("required"):
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is list:
            kwargs.update(nargs="+", type=typing.get_args(hint)[0])
        else:
            kwargs["type"] = hint
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


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
    from unet_hub.train.loop import TrainConfig

    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a U-Net on image/mask pairs", formatter_class=fmt)
    _add_dataclass_options(train, TrainConfig)
    train.set_defaults(handler=_train)

    predict = sub.add_parser("predict", help="write a mask PNG for each image", formatter_class=fmt)
    _add_model_options(predict)
    predict.add_argument("images", nargs="+", type=Path, help="image files to segment")
    predict.add_argument("--out", type=Path, required=True, help="folder for the mask PNGs")
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
    from unet_hub.space.cli import add_space_command

    add_space_command(sub, fmt)  # unet-hub space build|push (unet_hub/space/cli.py)
    return parser


def _train_options(args: argparse.Namespace) -> dict:
    """The ``TrainConfig`` fields of parsed ``train`` arguments."""
    from unet_hub.train.loop import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def train_config(argv: Sequence[str]) -> TrainConfig:
    """The ``TrainConfig`` of a ``unet-hub train`` / ``train.py`` command line (its
    options, without the command), for scripts that call ``training.train`` directly."""
    from unet_hub.train.loop import TrainConfig

    return TrainConfig(**_train_options(build_parser().parse_args(["train", *argv])))


def _train(args: argparse.Namespace) -> int:
    from unet_hub.train.loop import TrainConfig, resume_config, train

    options = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    given = _train_options(args)
    if args.resume:
        changed = {k: v for k, v in given.items() if v != options[k]}
        cfg = resume_config(args.resume, changed)
    elif args.data is None or args.out is None:
        print("error: train needs --data and --out (or --resume RUN_DIR)", file=sys.stderr)
        return 2
    else:
        cfg = TrainConfig(**given)
    result = train(cfg, command=_command_line())
    if not result.main:
        return 0  # the main process reports for all
    best = result.best
    summary = f"best epoch {result.best_epoch}"
    if best.val_dice is not None:
        summary += f": validation Dice {best.val_dice:.4f}, IoU {best.val_iou:.4f}"
    print(f"{summary}\nbest model: {result.out}/  (last epoch: {result.out}/last/)")
    if result.evaluation is not None:
        print(f"\nthe best model on the validation data:\n{result.evaluation.table()}")
    if result.commit is not None:
        print(f"pushed to {cfg.push_to_hub}: {result.commit.commit_url}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import cv2

    from unet_hub.data.images import read_image
    from unet_hub.infer.segment import predict_mask, resolve_device
    from unet_hub.model.unet import UNet

    device = str(resolve_device(args.device))
    model = UNet.from_pretrained(args.model, map_location=device, revision=args.revision)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for image_path in args.images:
        target = args.out / f"{image_path.stem}.png"
        try:
            if target.resolve() == image_path.resolve():
                raise UNetHubError(
                    f"{image_path}: the mask would overwrite the image; choose another --out folder"
                )
            with _max_pixels_hint():
                image = read_image(image_path, max_pixels=args.max_pixels)
            mask = predict_mask(model, image, args.threshold)
        except UNetHubError as e:  # report and go on with the other images
            print(f"error: {e}", file=sys.stderr)
            failures += 1
            continue
        cv2.imwrite(str(target), mask)
        print(f"{image_path} -> {target}")
    return 1 if failures else 0


def _evaluate(args: argparse.Namespace) -> int:
    from unet_hub.data.pairs import find_pairs, select_stems
    from unet_hub.evaluate.evaluator import evaluate_pairs
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
        )
    print(evaluation.table())
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


def _command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


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
