"""The training loop: data -> U-Net -> loss -> optimiser, validated every epoch.

Read ``_train`` top to bottom: ``_set_up`` builds everything a run needs (``Run``), the
epoch loop trains, validates and saves each epoch through the run folder, and
``_finish`` scores the best model in full and publishes it.

The defaults are the documented recipe (see ``unet_hub.train.options``). Unlike the
recipe's original script, inputs are scaled to [0, 1], a validation block is held out,
and the model kept as "best" is the one with the best validation Dice, not the lowest
loss of one batch. Options add the U-Net paper's recipe: its augmentation, its border
weight map, SGD with momentum 0.99, crops, other optimisers and learning-rate schedules,
and a wall-clock budget.
"""

from __future__ import annotations

import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from huggingface_hub import CommitInfo
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from unet_hub import metric_names
from unet_hub.data.dataset import SegmentationDataset
from unet_hub.errors import ConfigError, UNetHubError
from unet_hub.evaluate.evaluator import Evaluation, evaluate_model, validate
from unet_hub.hub.publish import HubError, check_push_access, push_model_folder
from unet_hub.infer.instances import InstanceOptions
from unet_hub.model.save import save_model_folder
from unet_hub.model.unet import UNet
from unet_hub.train.checkpoint import fault_point, read_checkpoint, read_checkpoint_state, restore
from unet_hub.train.diagnose import check_epoch
from unet_hub.train.distill import Teacher
from unet_hub.train.losses import SegmentationLoss
from unet_hub.train.optim import LRSchedule, build_optimizer
from unet_hub.train.options import OPTIONS, TrainConfig, normalised
from unet_hub.train.run_folder import CardFacts, EpochStats, RunFolder, RunState
from unet_hub.train.setup import (
    averaged_model,
    load_datasets,
    make_accelerator,
    memory_format,
    seed_epoch,
    seed_everything,
    start_from_model,
    sync_batchnorm,
)


class TrainingDiverged(UNetHubError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """Where the run wrote its outputs and how good its best model is."""

    out: Path
    best_epoch: int
    history: list[EpochStats]
    model: UNet | None = None  # the model as the last epoch left it (on every process)
    main: bool = True  # False on the other processes of a multi-process run
    commit: CommitInfo | None = None  # the Hub commit, with --push-to-hub
    evaluation: Evaluation | None = None  # the best model on the validation set, in full

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


@dataclass
class Run:
    """Everything one training run works with, built by ``_set_up``."""

    cfg: TrainConfig
    accelerator: Accelerator
    model: torch.nn.Module  # as Accelerate wraps it (DDP with several processes)
    net: UNet  # the model itself
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    generator: torch.Generator  # the sample order
    val_set: SegmentationDataset | None
    criterion: SegmentationLoss
    schedule: LRSchedule
    layout: torch.memory_format
    state: RunState
    folder: RunFolder
    facts: CardFacts
    budget: float | None  # seconds, with --max-minutes
    samples_per_step: int
    ema: AveragedModel | None = None  # the moving average of the weights, with --ema
    teacher: Teacher | None = None  # with --teacher

    @property
    def kept(self) -> UNet:
        """The model that is validated and saved: the averaged weights with --ema."""
        return self.ema.module if self.ema is not None else self.net


def train(cfg: TrainConfig, command: str | None = None) -> TrainResult:
    """Train a U-Net as ``cfg`` says; write the best and last models, the log and a
    checkpoint each epoch, and publish the best model when ``cfg.output.push_to_hub``
    names a repo. Runs as one process, or as one of several under ``accelerate launch``."""
    accelerator = make_accelerator(cfg)
    try:
        return _train(cfg, accelerator, command)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Any launcher's process group, one process included (torchrun
            # --nproc_per_node 1 on a GPU starts NCCL): an undestroyed one warns or
            # aborts at exit.
            accelerator.end_training()
        if accelerator.num_processes == 1:
            # let the next train() in this process choose other Accelerate settings
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()


def _train(cfg: TrainConfig, accelerator: Accelerator, command: str | None) -> TrainResult:
    run = _set_up(cfg, accelerator, command)
    cfg, state, main = run.cfg, run.state, accelerator.is_main_process  # cfg: with what was found
    steps = state.samples // run.samples_per_step
    # with a time budget the number of steps is not known in advance
    total = None if run.budget else cfg.schedule.epochs * _steps_per_epoch(run)
    progress = tqdm(total=total, initial=steps, unit="step", dynamic_ncols=True, disable=not main)
    clock = time.perf_counter() - state.seconds  # a resumed run continues its budget
    epoch = state.epoch
    # a run resumed after its time budget was used up trains no further
    used_up = run.budget and state.seconds >= run.budget
    last_epoch = state.epoch if used_up else cfg.schedule.epochs
    try:
        for epoch in range(state.epoch + 1, last_epoch + 1):
            started = time.perf_counter()
            seed_epoch(cfg.run.seed, epoch, accelerator.process_index, run.generator)
            train_loss, steps, out_of_time = _train_one_epoch(run, epoch, steps, clock, progress)
            val_loss = evaluation = None
            fault_point("validate")
            if run.val_set is not None:
                val_loss, evaluation = validate(run.kept, run.val_set, run.criterion, accelerator)
            score = _selection_score(cfg.output.select_by, evaluation, train_loss)
            stats = _epoch_stats(epoch, train_loss, val_loss, evaluation, run.schedule.lr, started)
            run.schedule.after_epoch(score)
            state.record(stats, score, time.perf_counter() - clock)
            stats.warning = check_epoch(state.history, cfg)
            if out_of_time:
                run.facts.epochs = _stopped_by_budget(epoch, cfg)
            checkpoint = {
                "config": cfg.options(),
                "schedule": run.schedule.state_dict(),
                "run": asdict(state),
            }
            fault_point("save")
            run.folder.save_epoch(
                run.kept,
                stats,
                run.facts,
                _card_metrics(stats),
                cfg.output.fp16_weights,
                (run.net, run.optimizer, checkpoint, run.ema),
            )
            accelerator.wait_for_everyone()
            progress.set_postfix_str(_describe(stats), refresh=True)
            if stats.warning and main:
                progress.write(f"warning (epoch {epoch}): {stats.warning}")
            if out_of_time:
                break
    except KeyboardInterrupt:
        progress.close()
        run.folder.save_interrupted(run.kept, epoch, run.facts)
        raise
    progress.close()
    return _finish(run)


def _train_one_epoch(
    run: Run, epoch: int, steps: int, clock: float, progress: tqdm
) -> tuple[float, int, bool]:
    """One pass over the training data: the epoch's mean loss, the optimisation steps
    done so far, and whether the time budget ran out."""
    accelerator, model = run.accelerator, run.model
    model.train()
    running = torch.zeros(2, device=accelerator.device)  # summed loss, samples
    out_of_time = False
    for x, y, *weights in run.loader:
        x = x.contiguous(memory_format=run.layout)
        with accelerator.accumulate(model):
            logits = model(x).float()
            loss = run.criterion(logits, y, *weights)
            if run.teacher is not None:
                loss = run.teacher.blend(loss, logits, x)
            accelerator.backward(loss)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        running += torch.stack([loss.detach() * len(x), running.new_tensor(len(x))])
        if not accelerator.sync_gradients:
            continue
        steps += 1
        if run.ema is not None:
            run.ema.update_parameters(run.net)
        elapsed = time.perf_counter() - clock
        run.schedule.after_step(steps, elapsed)
        progress.update(1)
        fault_point("step")
        if run.budget and _any_process(accelerator, elapsed >= run.budget):
            out_of_time = True
            break
    loss_sum, seen = accelerator.reduce(running, "sum").tolist()
    train_loss = loss_sum / seen
    if not math.isfinite(train_loss):
        raise _diverged(run, epoch, train_loss)
    run.state.samples += int(seen)
    return train_loss, steps, out_of_time


def _finish(run: Run) -> TrainResult:
    """After the last epoch: the curve, the best model scored in full, the push."""
    cfg, state, main = run.cfg, run.state, run.accelerator.is_main_process
    if run.budget and state.seconds >= run.budget:  # also when a resumed run did nothing
        run.facts.epochs = _stopped_by_budget(state.epoch, cfg)
    result = TrainResult(
        out=run.folder.path,
        best_epoch=state.best_epoch,
        history=state.history,
        model=run.kept,
        main=main,
    )
    if run.folder.plot_curve():
        run.facts.curve = run.folder.curve.name
    if main and run.val_set is not None and state.best_epoch:
        result.evaluation = _evaluate_best(run, _card_metrics(result.best))
    if main and cfg.output.push_to_hub:
        result.commit = _push(run.folder.path, cfg)
    run.accelerator.wait_for_everyone()
    return result


# -- setting a run up --------------------------------------------------------------------


def _set_up(cfg: TrainConfig, accelerator: Accelerator, command: str | None) -> Run:
    """Data, model, optimiser, schedule and run folder; a resumed run's state restored.

    The order of the random draws (data order generator, then the weights) is part of
    what makes a seeded run reproducible: keep it.
    """
    main = accelerator.is_main_process
    resumed = read_checkpoint(RunFolder(cfg.run.resume).checkpoint) if cfg.run.resume else None
    if cfg.output.push_to_hub and main:
        check_push_access(cfg.output.push_to_hub)  # a bad token fails now, not after training
    seed_everything(cfg.run.seed)
    cfg, train_set, val_set = load_datasets(cfg)  # with the masks' values, when found
    generator = torch.Generator()
    o = cfg.optim
    sampler = RandomSampler(
        train_set, num_samples=cfg.schedule.samples_per_epoch, generator=generator
    )
    loader = DataLoader(
        train_set,
        batch_size=o.batch_size,
        sampler=sampler,
        num_workers=cfg.system.num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    model = UNet(cfg.model)
    if cfg.run.init_from and resumed is None:  # a resumed run restores its own weights
        for note in start_from_model(model, cfg):
            accelerator.print(note, file=sys.stderr)
    if cfg.system.sync_bn:
        model = sync_batchnorm(model, accelerator)
    layout = memory_format(cfg, accelerator)
    model = model.to(memory_format=layout)
    optimizer = build_optimizer(o.optimizer, model.parameters(), o.lr, o.weight_decay, o.momentum)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    run = Run(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        net=accelerator.unwrap_model(model),
        optimizer=optimizer,
        loader=loader,
        generator=generator,
        val_set=val_set,
        criterion=SegmentationLoss(cfg.loss.loss),
        schedule=None,  # set below: it needs the prepared loader's length
        layout=layout,
        state=RunState(),
        folder=RunFolder(cfg.output.out, main),
        facts=None,  # set below: it needs the commands of a resumed run
        budget=cfg.schedule.max_minutes * 60 if cfg.schedule.max_minutes else None,
        samples_per_step=o.batch_size * o.grad_accum * accelerator.num_processes,
    )
    if o.ema:
        run.ema = averaged_model(run.net, o.ema)
    if cfg.loss.teacher:
        run.teacher = Teacher.load(
            cfg.loss.teacher, cfg.loss.distill_weight, run.net, accelerator.device
        )
    total_steps = cfg.schedule.epochs * _steps_per_epoch(run)
    run.schedule = LRSchedule(cfg.schedule.lr_schedule, optimizer, total_steps, run.budget)
    if resumed is not None:
        _restore(run, *resumed)
    run.state.commands.append(command or "")
    run.facts = _card_facts(cfg, train_set, val_set, run.state.commands)
    run.facts.hardware = describe_hardware(accelerator.device, accelerator.num_processes)
    run.folder.start(run.state.history)
    return run


def describe_hardware(device: torch.device, processes: int = 1) -> str:
    """What trained the model, in words for its card: the accelerator (or the CPU's
    architecture and threads), the number of processes, and torch's version."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    count = f"{processes} × " if processes > 1 else ""
    return f"{count}{what}, torch {torch.__version__.split('+')[0]}"


def _restore(run: Run, tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    """Continue from a checkpoint: weights, optimiser, schedule and progress."""
    restore(tensors, saved, run.net, run.optimizer, run.ema)
    run.schedule.load_state_dict(saved["schedule"])
    if run.cfg.optim.lr != saved["config"]["lr"]:  # e.g. going on more gently after a divergence
        for group in run.optimizer.param_groups:
            group["lr"] = run.cfg.optim.lr
    run.state = RunState.from_dict(saved["run"])


def _card_facts(
    cfg: TrainConfig,
    train_set: SegmentationDataset,
    val_set: SegmentationDataset | None,
    commands: list[str],
) -> CardFacts:
    """The card's training facts. Data sets are named by ``--dataset-name`` or by their
    folder's own name, never by a path of the machine that trained the model."""
    data = cfg.data
    name = data.dataset_name or Path(data.data).name
    if val_set is None:
        eval_dataset = f"{name} (training images)"
    else:
        held_out = (
            (data.val_data and Path(data.val_data).name)
            or (data.val_slices and f"slices {data.val_slices} of {name}")
            or f"held-out block of {name}"
        )
        eval_dataset = f"{held_out} ({len(val_set)} images)"
    notes = list(cfg.output.card_note or [])
    if cfg.output.fp16_weights:
        notes.append("Weights are stored as float16; the model computes in float32.")
    init = cfg.run.init_from
    init_text = init and (f"{init} at {cfg.run.init_revision}" if cfg.run.init_revision else init)
    return CardFacts(
        data=f"{name} ({len(train_set)} images)",
        val=eval_dataset if val_set else None,
        recipe=cfg.recipe(),
        epochs=cfg.schedule.epochs,
        command=" ; then: ".join(c for c in commands if c),
        seed=cfg.run.seed,
        notes=notes,
        eval_dataset=eval_dataset,
        selected_by=SELECTED_BY[cfg.output.select_by] if val_set else "mean training loss",
        dataset_id=data.dataset_id,
        base_model=init if init and not Path(init).exists() else None,
        init_from=init_text and (Path(init_text).name if Path(init).exists() else init_text),
    )


def _steps_per_epoch(run: Run) -> int:
    return math.ceil(len(run.loader) / run.cfg.optim.grad_accum)


# -- epochs --------------------------------------------------------------------------------


def _epoch_stats(
    epoch: int,
    train_loss: float,
    val_loss: float | None,
    evaluation: Evaluation | None,
    lr: float,
    started: float,
) -> EpochStats:
    seconds = time.perf_counter() - started
    if evaluation is None:
        return EpochStats(epoch, train_loss, None, None, None, None, None, lr, seconds)
    return EpochStats(
        epoch,
        train_loss,
        val_loss,
        evaluation.mean_dice,
        float(np.mean(evaluation.iou)),
        evaluation.pixel_error,
        evaluation.rand_error,
        lr,
        seconds,
        val_rand_error_thinned=evaluation.rand_error_thinned,
        val_foreground=evaluation.foreground_predicted,
        mask_foreground=evaluation.foreground_true,
    )


#: What each ``--select-by`` picks the best epoch by, as the card says it.
SELECTED_BY = {
    "dice": metric_names.VAL_DICE,
    "rand": metric_names.on_validation(metric_names.RAND_ERROR),
    "rand-thinned": metric_names.on_validation(f"{metric_names.RAND_ERROR} {metric_names.THINNED}"),
}


def _selection_score(select_by: str, evaluation: Evaluation | None, train_loss: float) -> float:
    """The score (higher is better) that picks the best epoch. Without validation data,
    the lowest mean loss over the whole epoch (never a single batch's loss); without EM
    scores (several classes), Dice."""
    if evaluation is None:
        return -train_loss
    rand = {"rand": evaluation.rand_error, "rand-thinned": evaluation.rand_error_thinned}
    value = rand.get(select_by)
    return evaluation.mean_dice if value is None else -value


def _diverged(run: Run, epoch: int, train_loss: float) -> TrainingDiverged:
    out, done = run.folder.path, run.state.epoch
    kept = (
        f"{out}/ keeps the best model and the checkpoint of epoch {done}: go on with a "
        f"lower learning rate (--resume {out} --lr ...)"
        if done
        else "no epoch was complete: start again with a lower --lr"
    )
    return TrainingDiverged(
        f"the training loss of epoch {epoch} is {train_loss} (--lr {run.cfg.optim.lr:g}): "
        f"training diverged and nothing of epoch {epoch} was saved; {kept}, or check the data"
    )


def _stopped_by_budget(epoch: int, cfg: TrainConfig) -> str:
    s = cfg.schedule
    return f"{epoch} of {s.epochs} (stopped by the {s.max_minutes:g}-minute budget)"


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True when ``flag`` is true on any process (so all processes stop together)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "sum"))


def _card_metrics(stats: EpochStats) -> dict[str, float]:
    metrics = {metric_names.TRAIN_LOSS: stats.train_loss}
    if stats.val_dice is not None:
        metrics = {
            metric_names.VAL_DICE: stats.val_dice,
            metric_names.VAL_IOU: stats.val_iou,
            metric_names.VAL_LOSS: stats.val_loss,
            **metrics,
        }
    return metrics


def _describe(stats: EpochStats) -> str:
    text = f"epoch {stats.epoch} loss {stats.train_loss:.4f}"
    if stats.val_dice is not None:
        text += f" val loss {stats.val_loss:.4f} Dice {stats.val_dice:.4f}"
    if stats.warning:
        text += " | warning: training and validation disagree (see the log)"
    return text


# -- the end of a run ----------------------------------------------------------------------


def _evaluate_best(run: Run, epoch_metrics: dict[str, float]) -> Evaluation:
    """Score the best model (as saved: the weights a user gets) on the validation set in
    full (with the threshold sweep, too slow for every epoch) and add the scores to its
    card; with ``--select-threshold``, first make the best-Rand threshold the model's own."""
    out, val_set = run.folder.path, run.val_set
    model = UNet.from_pretrained(out)
    stems = [p[0].stem for p in val_set.pairs]
    # a model that recommends post-processing its objects is scored with it too (as
    # `unet-hub evaluate` does), so its card has the figures of what it recommends
    cfg = model.config
    objects = (
        InstanceOptions(watershed=cfg.watershed, min_size=cfg.min_size)
        if cfg.recommends_objects
        else None
    )
    evaluation = evaluate_model(
        model, val_set.images, val_set.masks, names=stems, instances=objects
    )
    metrics = epoch_metrics | evaluation.card_metrics(overlap=False)
    training = run.facts.best(run.state.best_epoch)
    best, trained_at = evaluation.best_rand_threshold, model.config.threshold
    if run.cfg.output.select_threshold and best is not None and best != trained_at:
        # the card then reports everything at the new threshold, and the pixel error
        # also at the one the model was trained and selected with
        before = evaluation
        model.update_config(threshold=best)
        evaluation = evaluate_model(
            model, val_set.images, val_set.masks, names=stems, instances=objects
        )
        metrics = evaluation.card_metrics() | {
            f"{name} (at {trained_at:.2f})": value
            for name, value in before.card_metrics(overlap=False).items()
            if name.startswith(metric_names.VAL_PIXEL_ERROR)
        }
        why = f"{best:g}, the lowest validation adapted Rand error (--select-threshold)"
        training = training | {"threshold": why}
    card = {"training": training, "metrics": metrics, **run.facts.card_kwargs()}
    save_model_folder(model, out, half=run.cfg.output.fp16_weights, **card)
    return evaluation


def _push(out: Path, cfg: TrainConfig) -> CommitInfo:
    """Publish the best model; on failure, say that it is saved and how to push it later."""
    repo, private = cfg.output.push_to_hub, cfg.output.hub_private
    try:
        return push_model_folder(out, repo, private=private)
    except UNetHubError as e:
        # quoted, so that the command runs as copied even when the folder has spaces
        command = shlex.join(
            ["unet-hub", "push", str(out), repo, *(["--private"] if private else [])]
        )
        raise HubError(
            f"{e} (the model is saved in {out}/; push it later with `{command}`)"
        ) from None


# -- resuming -------------------------------------------------------------------------------


def resume_config(run_dir: str | Path, given: dict[str, Any] | None = None) -> TrainConfig:
    """The options of the run checkpointed in ``run_dir``, to continue it with ``train``.

    ``given`` are the options given again (exactly those on the command line): the
    resumable ones replace the saved ones; any other that differs from the run's raises
    ``ConfigError`` (a resumed run keeps its recipe).
    """
    folder = RunFolder(run_dir)
    saved = TrainConfig.from_options(read_checkpoint_state(folder.checkpoint)["config"])
    saved_options = saved.options()
    given = dict(given or {})
    given.pop("resume", None)
    if given.pop("out", None) not in (None, saved.output.out, str(run_dir)):
        raise ConfigError(f"--out: a resumed run continues in its own folder, {run_dir}")
    for name, value in given.items():
        same = normalised(name, value) == normalised(name, saved_options[name])
        if not OPTIONS[name].resumable and not same:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the run in {run_dir} ({flag} "
                f"{saved_options[name]}); a resumed run keeps its settings: drop the option, "
                "or start a new run in another --out"
            )
    changes = {k: v for k, v in given.items() if OPTIONS[k].resumable}
    return saved.replace(**changes, resume=str(run_dir), out=str(run_dir))
