"""--mode train and --mode retrain: one training run, read top to bottom in `fit`.

train and retrain differ only in their targets (refined flags) and published hyper-parameters
(PROTOCOL.md §7, §10). A run builds its nets from the recipe of --model, optionally resumes,
then per epoch trains, evaluates the parsing network on val, keeps the checkpoints whose val
score improved (`select_checkpoints`) and saves the resume state (`save_resume_state`, read
back by `restore_resume_state`).
"""
import json
import math
import os
import time
from dataclasses import dataclass, field

import torch

import engine
from avvp_data.annotations import read_label_filenames
from avvp_data.datasets import check_same_classes, recorded_classes
from avvp_data.llp import MODALITIES
from avvp_data.refinement_flags import read_refined_labels
from config import changed_fields, recorded_flags
from dataloader import OFFICIAL_LAYOUT
from engine.cuda_graph import GraphedTrainStep
from engine.cuda_graph import check_device as check_cuda_graph_device
from engine.label_refinement import restrict_to_labels
from engine.optimization import build_optimizer, build_scheduler
from modes.common import (
    check_inputs,
    check_selectable,
    evaluate_model,
    format_results,
    headline,
    load_splits,
    move_aside_previous_run,
    progress_setting,
    record_path,
    start_run,
    to_device,
)
from recipes import RECIPES
from recipes.base import SelectionRole
from utils import checkpoint
from utils.errors import FileWriteError, LLPDataError, RunInterrupted, UsageError
from utils.io import atomic_write_json
from utils.lfav_metrics import ROLE_SCORES as LFAV_ROLE_SCORES
from utils.progress import heartbeat_for
from utils.runtime import resolve_device

AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16}   # --autocast
EPOCH_LINE_METRICS = ("seg_audio", "seg_visual", "seg_av", "seg_type", "evt_type")   # val scores of an epoch line
LFAV_EPOCH_LINE_METRICS = ("map_avg", "selection")   # and of an LFAV run's
# flags that may differ on --resume: they change neither the trained weights nor the scores
# (--epochs may grow too: see check_resume_config); a moved --model_save_dir changes no result
RESUME_FREE_FLAGS = ("resume", "progress", "log_interval", "no_log", "eval_batch_size", "feature_cache",
                     "export_dir", "refine_out", "model_save_dir", "log_seconds", "unused_flags")
PATH_FLAGS = ("llp_root", "refined_labels", "audio_pseudo_dir",
              "visual_pseudo_dir") + tuple(OFFICIAL_LAYOUT)
# fused Adam is the same update in one pass over the weights (CPU: 3x faster than the
# per-parameter loop, measured in scripts/benchmark.py); CUDA and CPU have it
FUSED_ADAM_DEVICES = ("cuda", "cpu")


def run_train(config):
    return fit(config)


def run_retrain(config):
    if not config.data.refined_labels:
        raise UsageError("--mode retrain needs --refined_labels (a .csv or .pkl from --mode estimate_labels, "
                         "or a pickle in the published format)")
    if not os.path.isfile(config.data.refined_labels):
        raise UsageError(f"--refined_labels {config.data.refined_labels}: file not found")
    return fit(config, flags_file=config.data.refined_labels)


@dataclass
class TrainingRun:
    """Everything a training run changes, and so everything a resume restores."""
    module: torch.nn.Module   # the recipe's TrainingModule: the parsing network and its training-only nets
    optimizers: dict      # name -> optimizer, same names
    schedulers: dict
    generator: torch.Generator   # drives the batch shuffling
    best: dict            # role -> best val score so far
    best_epoch: dict      # role -> epoch of that score (None before any)
    history: list = field(default_factory=list)   # one record per finished epoch
    epoch: int = 0        # the last finished epoch

    @property
    def nets(self):
        """name -> net of the module, "model" (the parsing network) first."""
        return self.module.nets


def build_training_run(recipe, config, feature_dims, device):
    """A fresh TrainingRun: the recipe's nets on `device`, one optimizer and one schedule per net
    (as published Adam + StepLR, PROTOCOL.md §7; --optimizer / --scheduler, PROTOCOL.md §13)."""
    module = recipe.training_module(recipe.build_model(recipe.model_config(config, feature_dims)),
                                    recipe.build_guides(config, feature_dims)).to(device)
    learning_rates = recipe.learning_rates(config)
    optim = config.optim
    optimizers, schedulers = {}, {}
    for name, net in module.nets.items():
        optimizers[name] = build_optimizer(optim.optimizer, net.parameters(), learning_rates[name], optim.weight_decay,
                                           (optim.beta1, optim.beta2), optim.eps,
                                           fused=device.type in FUSED_ADAM_DEVICES)
        schedulers[name] = build_scheduler(optim.scheduler, optimizers[name], optim.lr_step, optim.lr_gamma,
                                           optim.warm_up_epoch, optim.epochs, optim.lr_min / optim.lr)
    roles = recipe.role_names
    return TrainingRun(module, optimizers, schedulers, torch.Generator().manual_seed(config.run.seed),
                       best={role: -math.inf for role in roles}, best_epoch={role: None for role in roles})


def save_resume_state(writer, path, run, config, model_config, device):
    """Queue the write of `<checkpoint>_last.pt`: all a resume needs to continue exactly."""
    writer.save(
        path, epoch=run.epoch, config=config.as_dict(), model_config=model_config,
        nets={name: net.state_dict() for name, net in run.nets.items()},
        optimizers={name: opt.state_dict() for name, opt in run.optimizers.items()},
        schedulers={name: sch.state_dict() for name, sch in run.schedulers.items()},
        generator=run.generator.get_state(), rng_cpu=torch.get_rng_state(),
        rng_cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        best=run.best, best_epoch=run.best_epoch, history=run.history)


def load_resume_state(path, config):
    """The state `save_resume_state` wrote, after checking that the run can go on with `config`:
    the same mode, model and every setting that changes the result (check_resume_config)."""
    state = checkpoint.load(path)
    recorded = recorded_flags(state)
    if recorded["mode"] != config.run.mode or recorded["model"] != config.model.name:
        raise UsageError(f"--resume: {path} is a {recorded['model']} {recorded['mode']} run")
    check_resume_config(recorded, config, state["epoch"], path)
    return state


def check_resume_config(recorded, config, finished_epochs, path):
    """Refuse a resume whose settings differ from the run's own (`recorded`: {flag: value},
    config.recorded_flags) in anything that changes its result, field by field; only
    RESUME_FREE_FLAGS and a larger --epochs may differ. Data paths compare as absolute paths."""
    def comparable(key, value):
        return os.path.abspath(value) if key in PATH_FLAGS and isinstance(value, str) and value else value
    changed = changed_fields(recorded, config, ignore=RESUME_FREE_FLAGS + ("epochs",), comparable=comparable)
    epochs = config.optim.epochs
    if epochs < recorded["epochs"]:
        changed.append(f"optim.epochs {recorded['epochs']} -> {epochs} (only more epochs may be asked for)")
    elif epochs != recorded["epochs"] and config.optim.scheduler != "steplr":
        changed.append(f"optim.epochs {recorded['epochs']} -> {epochs} (--scheduler {config.optim.scheduler} is "
                       "shaped by the number of epochs)")
    if changed:
        raise UsageError(f"--resume: {path} was trained with other settings: {'; '.join(changed)}. Resume with the "
                         f"run's own flags (its _args.json lists them), or start a new run under another --checkpoint")
    if epochs <= finished_epochs:
        print(f"--resume: {path} already holds {finished_epochs} epoch(s); nothing left to train up to "
              f"--epochs {epochs}")


def restore_resume_state(state, run, device):
    """Load what `save_resume_state` wrote into `run` (nets, optimizers, schedulers, random states,
    selection state, history) so that the run continues as if never interrupted."""
    for name, net in run.nets.items():
        net.load_state_dict(state["nets"][name])
        run.optimizers[name].load_state_dict(state["optimizers"][name])
        run.schedulers[name].load_state_dict(state["schedulers"][name])
    run.generator.set_state(state["generator"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    run.best, run.best_epoch = dict(state["best"]), dict(state["best_epoch"])
    run.history, run.epoch = list(state["history"]), state["epoch"]
    print(f"resumed after epoch {run.epoch}")


def select_checkpoints(selection, metrics, epoch, run):
    """Roles (recipe SelectionRoles) whose val score improved at `epoch`; updates run.best and
    run.best_epoch. PROTOCOL.md §7 (DHHN's three roles), §11 (HAN's one, ties to the later epoch)."""
    improved = []
    for role in selection:
        score = role.score(metrics)
        if role.improves(score, run.best[role.name]):
            run.best[role.name], run.best_epoch[role.name] = score, epoch
            improved.append(role.name)
    return improved


def selection_roles(config, recipe):
    """The recipe's SelectionRoles, scored as the dataset selects: on LFAV each role the recipe shares
    with utils/lfav_metrics.ROLE_SCORES takes that score, strictly better to be kept (PROTOCOL.md
    §16); a role without one (MA's "final": the last epoch) keeps its rule."""
    if config.data.dataset != "lfav":
        return recipe.selection
    return tuple(SelectionRole(role.name, LFAV_ROLE_SCORES[role.name]) if role.name in LFAV_ROLE_SCORES else role
                 for role in recipe.selection)


def _load_training_data(config, flags_file, device):
    """(train TensorSplit with refinement flags and segment pseudo-labels when given, val
    TensorSplit, val LLPSplit)."""
    if config.data.dataset == "lfav":   # no refinement flags (config.LLP_ONLY_FLAGS); pseudo-labels padded per batch
        train_split, val_split = load_splits(config, {"train": True, "val": False})
        check_selectable(config, val_split)
        return to_device(config, train_split, device), to_device(config, val_split, device), val_split
    # a bad flags file is reported before the features are read, not after
    raw_flags = (read_refined_labels(flags_file, read_label_filenames(config.data.label_train), config.data.class_names)
                 if flags_file else None)
    train_split, val_split = load_splits(config, {"train": True, "val": False})
    if val_split.feature_formats() != train_split.feature_formats():
        raise LLPDataError(f"the features of train {train_split.feature_formats()} and val "
                           f"{val_split.feature_formats()} are not of one kind")
    train_data = to_device(config, train_split, device)
    for modality in MODALITIES:   # the batches carry them, and the criterion adds their loss (PROTOCOL.md §13)
        pseudo = getattr(train_split, f"pseudo_{modality}")
        if pseudo is not None:
            train_data.add(f"{modality}_pseudo", torch.from_numpy(pseudo))
    if raw_flags is not None:
        audio_flags, visual_flags, dropped = restrict_to_labels(*raw_flags, train_split.labels)
        if dropped:
            print(f"--refined_labels {flags_file}: {dropped} flag(s) on classes the video is not "
                  "labelled with are ignored")
        train_data.add("audio_flags", torch.as_tensor(audio_flags, dtype=torch.bool))
        train_data.add("visual_flags", torch.as_tensor(visual_flags, dtype=torch.bool))
    return train_data, to_device(config, val_split, device), val_split


def fit(config, flags_file=None):
    """Train the recipe of --model on the training split (refined targets with `flags_file`),
    selecting checkpoints on val; returns the run's summary."""
    recipe = RECIPES[config.model.name]
    device = resolve_device(config.run.device)
    if config.optim.cuda_graph:
        check_cuda_graph_device(device)
    check_inputs(config, ("train", "val"))
    last_file = checkpoint.last_path(config.run.model_save_dir, config.run.checkpoint)
    if config.run.resume and not os.path.isfile(last_file):
        raise UsageError(f"--resume: no {last_file} to resume from")
    # checked before anything is written, so that a refused resume leaves the run as it was
    resume_state = load_resume_state(last_file, config) if config.run.resume else None
    train_data, val_data, val_split = _load_training_data(config, flags_file, device)
    if resume_state is not None:   # the same --classes file, edited since, would pair other names with the weights
        check_same_classes(recorded_classes(resume_state["model_config"]), val_split.classes, last_file, UsageError)
    if resume_state is None:
        move_aside_previous_run(config)
    info = start_run(config, device)
    started = time.time()

    feature_dims = val_split.feature_dims()
    # the kind of features is recorded, so that val/test refuse to score the model on another kind
    model_config = {**recipe.model_config(config, feature_dims), "feature_formats": val_split.feature_formats()}
    run = build_training_run(recipe, config, feature_dims, device)
    if resume_state is not None:
        restore_resume_state(resume_state, run, device)
    step = engine.TrainStep(run.module, recipe.criterion(config), run.optimizers.values(),
                            AUTOCAST_DTYPES[config.optim.autocast], grad_norm=config.optim.grad_norm)
    # built after a resume, so that the captured graph sees the restored optimizer state
    graphed_step = None
    if config.optim.cuda_graph:
        graphed_step = GraphedTrainStep(step, train_data, config.optim.batch_size, run.nets.values(),
                                        run.optimizers.values())
    saved_epoch = run.epoch   # the last epoch whose _last.pt is written (or queued)
    first_epoch = run.epoch + 1
    try:
        # checkpoints are written on a worker thread; leaving the block (normally, on an error or on
        # Ctrl-C / SIGTERM) first finishes every queued write
        with checkpoint.BackgroundWriter() as writer:
            for epoch in range(run.epoch + 1, config.optim.epochs + 1):
                epoch_start = time.time()
                losses = engine.train_one_epoch(step, train_data, config.optim.batch_size, run.generator, graphed_step,
                                                _step_logger(config, epoch), progress_setting(config), f"epoch {epoch}")
                for scheduler in run.schedulers.values():
                    scheduler.step()
                metrics = evaluate_model(config, recipe, run.nets["model"], val_data, val_split)
                saved = select_checkpoints(selection_roles(config, recipe), metrics, epoch, run)
                for role in saved:
                    writer.save(checkpoint.best_path(config.run.model_save_dir, config.run.checkpoint, role),
                                model=run.nets["model"].state_dict(), model_config=model_config, role=role,
                                epoch=epoch, score=run.best[role], val=headline(metrics), config=config.as_dict())
                run.history.append({"epoch": epoch, "losses": losses, "val": headline(metrics), "saved": saved,
                                    "seconds": round(time.time() - epoch_start, 3)})
                run.epoch = epoch
                save_resume_state(writer, last_file, run, config, model_config, device)
                saved_epoch = epoch
                if not config.run.no_log:   # queued behind _last.pt: the log never runs ahead of the checkpoints
                    writer.write_text(record_path(config, "log.jsonl"),
                                      "".join(json.dumps(item) + "\n" for item in run.history))
                print(_epoch_line(run.history[-1]))
                if epoch == first_epoch and _rmse_note(losses):
                    print(_rmse_note(losses))
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted(last_file, saved_epoch)) from None
    except FileWriteError as error:   # a full disk: say what is on disk and how to go on
        raise FileWriteError(f"{error}; {_resumable(last_file)}") from None
    return _finish(config, run, info, started)


def _resumable(last_file):
    """Which epoch a run stopped by a failed write can be resumed from (its _last.pt on disk)."""
    if not os.path.isfile(last_file):
        return "no epoch of this run was saved: start it again once the disk has room"
    epoch = checkpoint.load(last_file, mmap=True)["epoch"]
    return f"{last_file} holds epoch {epoch}, complete: continue with --resume once the disk has room"


def _finish(config, run, info, started):
    """Print the val table of every selected checkpoint and write the run's summary."""
    summary = {"provenance": info, "config": config.as_dict(), "best_epoch": run.best_epoch, "best_score": run.best,
               "history": run.history, "wall_seconds": round(time.time() - started, 3)}
    for role, epoch in run.best_epoch.items():
        if epoch is not None:
            print(format_results(run.history[epoch - 1]["val"], title=f"val, best-{role} checkpoint (epoch {epoch})"))
    if not config.run.no_log:
        atomic_write_json(summary, record_path(config, "summary.json"))
    return summary


def _interrupted(last_file, saved_epoch):
    if saved_epoch == 0:
        return "interrupted during epoch 1, before any checkpoint was written; start the run again"
    return f"interrupted after epoch {saved_epoch} ({last_file} holds it); continue with --resume"


def _step_logger(config, epoch):
    """Every --log-interval steps, the batch's total loss, as the release printed it; and, without
    progress bars (output to a file), that line also when --log_seconds have passed since the last,
    so that a long epoch never leaves the log silent."""
    heartbeat = heartbeat_for(progress_setting(config), config.run.log_seconds)

    def line(step, num_steps, losses):
        total = float(sum(value.detach() for value in losses.values()))   # a host sync: only when printed
        return f"epoch {epoch} step {step}/{num_steps} | loss {total:.4f}"

    def log(step, num_steps, losses):
        if config.run.log_interval > 0 and step % config.run.log_interval == 0:
            print(line(step, num_steps, losses), flush=True)
            heartbeat.last = heartbeat.clock()
        else:
            heartbeat(lambda: line(step, num_steps, losses))
    return log


def _rmse_note(losses):
    """Why the *rmse terms print negative, said once per run (None without such a term)."""
    terms = [name for name in losses if name.endswith("rmse")]
    if not terms:
        return None
    return (f"note: {' and '.join(terms)} = -MSE(audio, visual predictions): negative by design, it pushes the "
            "two modalities' predictions apart (PROTOCOL.md §7); a more negative value is a larger gap")


def _epoch_line(record):
    val = record["val"]
    losses = " ".join(f"{name}={value:.4f}" for name, value in record["losses"].items())
    scores = " ".join(f"{key}={100 * val[key]:.1f}" for key in EPOCH_LINE_METRICS + LFAV_EPOCH_LINE_METRICS
                      if key in val)
    saved = f" saved: {','.join(record['saved'])}" if record["saved"] else ""
    return f"epoch {record['epoch']:3d} ({record['seconds']:.1f}s) | {losses} | val {scores}{saved}"
