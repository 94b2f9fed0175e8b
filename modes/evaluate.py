"""--mode val and --mode test: every row of the recipe of --model on the split, with the published
table, per-class F1, the modality confusion and, optionally, exported predictions (PROTOCOL.md §8, §9)."""
import os
import time

import engine
from config import recorded_flags
from modes.common import (
    check_inputs,
    headline,
    load,
    load_selected_model,
    progress_setting,
    record_path,
    start_run,
    to_device,
)
from nets.dual import DualHHN
from recipes import RECIPES
from reporting.export import export_predictions
from reporting.tables import (
    confusion_dict,
    format_confusion,
    format_table,
    modality_confusion,
    per_class_table,
    write_per_class_csv,
)
from utils import checkpoint
from utils.errors import UsageError
from utils.eval_metrics import score_outputs, segment_predictions
from utils.io import atomic_write_json, check_writable
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


def unfinished_training(config):
    """"trained 3 of 10 epochs" when --checkpoint's run stopped before its last epoch (its _last.pt
    says so), else None (finished, or files without a resume state such as the original release's)."""
    path = checkpoint.last_path(config.run.model_save_dir, config.run.checkpoint)
    if not os.path.isfile(path):
        return None
    state = checkpoint.load(path, mmap=True)   # mmap: only the two numbers are read, not the weights
    planned = recorded_flags(state).get("epochs")
    if planned is None or state["epoch"] >= planned:
        return None
    return f"trained {state['epoch']} of {planned} epochs"


def run_evaluate(config):
    recipe = RECIPES[config.model.name]
    device = resolve_device(config.run.device)
    split_name = config.run.mode
    check_inputs(config, (split_name,))
    if config.run.export_dir:   # refused now, not after the evaluation
        if os.path.exists(config.run.export_dir) and not os.path.isdir(config.run.export_dir):
            raise UsageError(f"--export_dir {config.run.export_dir}: exists and is not a folder")
        check_writable(config.run.export_dir)
    for role in recipe.required_roles():   # missing checkpoints are reported before loading features
        checkpoint.find_selected(config.run.model_save_dir, config.run.checkpoint, role, recipe.release_files)
    split = load(config, split_name)
    rows = assemble_rows(recipe, config, split, device)
    unfinished = unfinished_training(config)
    info = start_run(config, device)
    if unfinished:
        print(f"warning: --checkpoint {config.run.checkpoint} is an UNFINISHED run ({unfinished}; it was stopped "
              "before its last epoch): its checkpoints are those of the epochs it reached")
    started = time.time()
    data = to_device(config, split, device)
    tables, results = {}, {}
    for name, model in rows.items():
        outputs = engine.predict(model, data, config.run.eval_batch_size, progress=progress_setting(config), desc=name)
        metrics = score_outputs(outputs, split.gt_audio, split.gt_visual, recipe.gating)
        results[name] = (outputs, metrics)
        tables[name] = headline(metrics)
        print(format_table(metrics, title=f"{split_name}: {name}" + (f" [UNFINISHED RUN: {unfinished}]"
                                                                        if unfinished else "")))
    summary = {"provenance": info, "config": config.as_dict(), "split": split_name, "num_videos": split.num_videos,
               "tables": tables, "unfinished": unfinished, "wall_seconds": round(time.time() - started, 3)}
    main_name = next(iter(results))   # the first row is the method's own (dual DHHN, or HAN)
    main_outputs, main_metrics = results[main_name]
    print(per_class_table(main_metrics, title=f"{split_name}: per-class F1 of {main_name}"))
    confusion = modality_confusion(*segment_predictions(main_outputs, recipe.gating), split.gt_audio, split.gt_visual)
    print(format_confusion(confusion,
                           title=f"{split_name}: modality confusion of {main_name} (video x class x segment)"))
    summary["modality_confusion"] = confusion_dict(confusion)
    if not config.run.no_log:
        write_per_class_csv(main_metrics, record_path(config, "per_class.csv"))
        atomic_write_json(summary, record_path(config, "summary.json"))
    if config.run.export_dir:
        export_predictions(config.run.export_dir, split,
                           {name: (outputs, recipe.gating) for name, (outputs, _) in results.items()})
        print(f"predictions exported to {config.run.export_dir}")
    return summary
