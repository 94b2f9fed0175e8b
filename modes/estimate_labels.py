"""--mode estimate_labels: judge every training label by modality swapping with a selected
checkpoint and write the flags for --mode retrain (PROTOCOL.md §10)."""
import os
import time

import engine
from modes.common import check_inputs, load, load_selected_model, progress_setting, record_path, start_run, to_device
from recipes import RECIPES
from utils import checkpoint
from utils.io import atomic_write_json
from avvp_data.refinement_flags import write_flags
from engine.label_refinement import summary_table
from utils.runtime import resolve_device


def run_estimate_labels(args):
    recipe = RECIPES[args.model]
    recipe.check_role("--refine_source", args.refine_source)
    device = resolve_device(args.device)
    check_inputs(args, ("train",))
    checkpoint.find_selected(args.model_save_dir, args.checkpoint, args.refine_source)   # before loading features
    train_split = load(args, "train")
    model, config = load_selected_model(recipe, args, args.refine_source, train_split, device)
    info = start_run(args, device)
    started = time.time()
    audio_flags, visual_flags, _ = engine.estimate_label_flags(
        model, to_device(args, train_split, device), train_split.labels, args.seed,
        args.eval_batch_size, progress_setting(args))
    prefix = args.refine_out or os.path.join(args.model_save_dir, f"{args.checkpoint}_refined_labels")
    pickle_path, csv_path = write_flags(prefix, train_split.filenames, audio_flags, visual_flags)
    print(summary_table(audio_flags, visual_flags, train_split.labels))
    print(f"flags written to {pickle_path} (published format) and {csv_path}")
    summary = {"provenance": info, "args": vars(args), "source_checkpoint": args.refine_source,
               "model_config": config, "flagged_audio": int(audio_flags.sum()),
               "flagged_visual": int(visual_flags.sum()), "outputs": [pickle_path, csv_path],
               "wall_seconds": round(time.time() - started, 3)}
    if not args.no_log:
        atomic_write_json(summary, record_path(args, "summary.json"))
    return summary
