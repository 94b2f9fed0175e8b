"""--mode estimate_labels: judge every training label by modality swapping with a selected
checkpoint and write the flags for --mode retrain (PROTOCOL.md §10)."""
import os
import time

import engine
from avvp_data.refinement_flags import write_flags
from engine.label_refinement import summary_table
from modes.common import (
    check_inputs,
    load,
    load_selected_model,
    progress_setting,
    record_path,
    start_run,
    to_device,
    write_run_args,
)
from recipes import RECIPES
from utils import checkpoint
from utils.io import atomic_write_json
from utils.runtime import resolve_device


def run_estimate_labels(config):
    recipe = RECIPES[config.model.name]
    recipe.check_role("--refine_source", config.run.refine_source)
    device = resolve_device(config.run.device)
    check_inputs(config, ("train",))
    # before loading features
    checkpoint.find_selected(config.run.model_save_dir, config.run.checkpoint, config.run.refine_source,
                             recipe.release_files)
    train_split = load(config, "train")
    model, model_config = load_selected_model(recipe, config, config.run.refine_source, train_split, device)
    info = start_run(config, device, write_args=False)   # written once the model has given finite outputs
    started = time.time()
    audio_flags, visual_flags, _ = engine.estimate_label_flags(
        model, to_device(config, train_split, device), train_split.labels, config.run.seed,
        config.run.eval_batch_size, progress_setting(config))
    write_run_args(config, info)
    prefix = config.run.refine_out or os.path.join(config.run.model_save_dir, f"{config.run.checkpoint}_refined_labels")
    pickle_path, csv_path = write_flags(prefix, train_split.filenames, audio_flags, visual_flags, train_split.classes)
    print(summary_table(audio_flags, visual_flags, train_split.labels, train_split.classes))
    print(f"flags written to {pickle_path} (published format) and {csv_path}")
    summary = {"provenance": info, "config": config.as_dict(), "source_checkpoint": config.run.refine_source,
               "model_config": model_config, "flagged_audio": int(audio_flags.sum()),
               "flagged_visual": int(visual_flags.sum()), "outputs": [pickle_path, csv_path],
               "wall_seconds": round(time.time() - started, 3)}
    if not config.run.no_log:
        atomic_write_json(summary, record_path(config, "summary.json"))
    return summary
