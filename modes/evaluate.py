"""--mode val and --mode test: every row of the recipe of --model on the split, with the published
table, per-class F1, the modality confusion and, optionally, exported predictions (PROTOCOL.md §8, §9)."""
import os
import time

import engine
from config import recorded_flags
from engine.variable_length import predict_videos, score_lfav
from modes.common import (
    check_inputs,
    format_results,
    headline,
    load,
    load_selected_model,
    progress_setting,
    record_path,
    start_run,
    to_device,
    write_run_args,
)
from nets.dual import DualHHN
from recipes import RECIPES
from reporting.export import export_predictions
from reporting.tables import (
    confusion_dict,
    format_confusion,
    modality_confusion,
    per_class_table,
    write_per_class_csv,
)
from utils import checkpoint
from utils.eval_metrics import score_outputs, segment_predictions
from utils.io import atomic_write_json, check_creatable
from utils.runtime import resolve_device


def assemble_rows(recipe, config, split, device):
    """{row title: model} for the recipe's rows: one selected checkpoint, or two combined as the dual
    model (audio predictions from one, visual from the other; PROTOCOL.md §8). A row that is not
    required is skipped, with a note, when its checkpoint file does not exist."""
    models, rows = {}, {}
    for row in recipe.rows:
        missing = [role for role in row.roles
                   if not checkpoint.selected_exists(config.run.model_save_dir, config.run.checkpoint, role,
                                                     recipe.release_files)]
        if missing and not row.required:
            print(f"row '{row.title}' skipped: no {'/'.join(missing)} checkpoint for "
                  f"--checkpoint {config.run.checkpoint}")
            continue
        for role in row.roles:
            if role not in models:
                models[role], _ = load_selected_model(recipe, config, role, split, device)
        if row.audio_role == row.visual_role:
            rows[row.title] = models[row.audio_role]
        else:
            rows[row.title] = DualHHN(models[row.audio_role], models[row.visual_role])
    return rows


def unfinished_training(config, roles):
    """"trained 3 of 10 epochs" when --checkpoint's run stopped before its last epoch (its _last.pt
    says so), "stopped in epoch 2 of 10 ..." when a best file of `roles` is newer than the run's
    _last.pt (the write of that epoch's _last.pt failed or was killed, and the run wrote no training
    summary); else None (finished, or files without a resume state such as the releases')."""
    save_dir, name = config.run.model_save_dir, config.run.checkpoint
    # mmap: only a few numbers are read, not the weights
    best = [checkpoint.load(path, mmap=True) for path in
            (checkpoint.best_path(save_dir, name, role) for role in roles) if os.path.isfile(path)]
    best = [state for state in best if isinstance(state, dict) and "epoch" in state and "config" in state]
    path = checkpoint.last_path(save_dir, name)
    last = checkpoint.load(path, mmap=True) if os.path.isfile(path) else None
    last_epoch = last["epoch"] if last is not None else 0
    newest = max(best, key=lambda state: state["epoch"], default=None)
    if newest is not None and newest["epoch"] > last_epoch and not training_summary_exists(config):
        planned = recorded_flags(newest).get("epochs", "?")
        return (f"stopped in epoch {newest['epoch']} of {planned}, before that epoch's {os.path.basename(path)} "
                "was written")
    if last is None:
        return None
    planned = recorded_flags(last).get("epochs")
    if planned is None or last_epoch >= planned:
        return None
    return f"trained {last_epoch} of {planned} epochs"


def training_summary_exists(config):
    """Whether the run wrote the summary of a finished train or retrain step (it may have deleted
    its _last.pt to save space since)."""
    return any(os.path.isfile(os.path.join(config.run.model_save_dir, f"{config.run.checkpoint}_{mode}_summary.json"))
               for mode in ("train", "retrain"))


def predict_rows(config, rows, split, device):
    """{row title: outputs} of every row's model on `split`: batched LLP outputs, or (LFAV) one
    outputs dict per video of its own length (engine/variable_length.py); non-finite outputs refused."""
    if config.data.dataset == "lfav":
        return {name: predict_videos(model, split.filenames, split.videos, device, config.run.eval_batch_size)
                for name, model in rows.items()}
    data = to_device(config, split, device)
    return {name: engine.predict(model, data, config.run.eval_batch_size, progress=progress_setting(config), desc=name)
            for name, model in rows.items()}


def score_rows(config, recipe, outputs, split):
    """The metrics dict of one row's outputs, as the dataset scores them (LLP: the recipe's gating)."""
    if config.data.dataset == "lfav":
        return score_lfav(outputs, split.gt_audio, split.gt_visual)
    return score_outputs(outputs, split.gt_audio, split.gt_visual, recipe.gating)


def run_evaluate(config):
    recipe = RECIPES[config.model.name]
    device = resolve_device(config.run.device)
    split_name = config.run.mode
    check_inputs(config, (split_name,))
    if config.run.export_dir:   # refused now, not after the evaluation; made only when written to
        check_creatable(config.run.export_dir, "--export_dir")
    for role in recipe.required_roles():   # missing checkpoints are reported before loading features
        checkpoint.find_selected(config.run.model_save_dir, config.run.checkpoint, role, recipe.release_files)
    split = load(config, split_name)
    rows = assemble_rows(recipe, config, split, device)
    unfinished = unfinished_training(config, recipe.required_roles())
    # the args file is written once every row has given finite outputs: a refused run leaves the
    # records of the run before it as they were
    info = start_run(config, device, write_args=False)
    if unfinished:
        print(f"warning: --checkpoint {config.run.checkpoint} is an UNFINISHED run ({unfinished}; it was stopped "
              "before its last epoch): its checkpoints are those of the epochs it reached")
    started = time.time()
    predicted = predict_rows(config, rows, split, device)
    write_run_args(config, info)
    tables, results = {}, {}
    for name, outputs in predicted.items():
        metrics = score_rows(config, recipe, outputs, split)
        results[name] = (outputs, metrics)
        tables[name] = headline(metrics)
        print(format_results(metrics, title=f"{split_name}: {name}" + (f" [UNFINISHED RUN: {unfinished}]"
                                                                          if unfinished else "")))
    summary = {"provenance": info, "config": config.as_dict(), "split": split_name, "num_videos": split.num_videos,
               "tables": tables, "unfinished": unfinished, "wall_seconds": round(time.time() - started, 3)}
    if config.data.dataset == "lfav":   # LFAV's release reports these tables only (PROTOCOL.md §16)
        if not config.run.no_log:
            atomic_write_json(summary, record_path(config, "summary.json"))
        return summary
    main_name = next(iter(results))   # the first row is the method's own (dual DHHN, or HAN)
    main_outputs, main_metrics = results[main_name]
    print(per_class_table(main_metrics, title=f"{split_name}: per-class F1 of {main_name}", classes=split.classes))
    confusion = modality_confusion(*segment_predictions(main_outputs, recipe.gating), split.gt_audio, split.gt_visual)
    print(format_confusion(confusion,
                           title=f"{split_name}: modality confusion of {main_name} (video x class x segment)"))
    summary["modality_confusion"] = confusion_dict(confusion)
    if not config.run.no_log:
        write_per_class_csv(main_metrics, record_path(config, "per_class.csv"), split.classes)
        atomic_write_json(summary, record_path(config, "summary.json"))
    if config.run.export_dir:
        export_predictions(config.run.export_dir, split,
                           {name: (outputs, recipe.gating) for name, (outputs, _) in results.items()})
        print(f"predictions exported to {config.run.export_dir}")
    return summary
