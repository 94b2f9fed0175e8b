"""Parse your own videos with a trained model: features, model, events, timeline.

    python parse_video.py my.mp4 other.mkv --checkpoint models/DHHN

For each video: its features are extracted as for LLP (scripts/extract_features.py; cached
under --features_dir and reused while the file is unchanged), the model of --checkpoint parses
every 10-s window (the dual DHHN, or the first row of any other model's evaluation), and the
windows are stitched into one timeline (docs/PROTOCOL.md §15). Written per video under
--out_dir/<name>/: <name>_events.json (class, modality, onset, offset, confidence),
<name>_audio.csv and <name>_visual.csv (the eval-file format), <name>_timeline.png.
"""
import argparse
import glob
import os
import sys

import numpy as np

import engine
import main_DHHN
from avvp_data.llp import NUM_CLASSES
from avvp_data.synthetic_llp import COMPLETE_MARKER
from config import recorded_flags, resolve_config
from dataloader import FEATURE_FLAGS, LLPSplit, load_features
from extraction.extractor import (
    KINDS,
    add_extraction_arguments,
    check_videos,
    extract_videos,
    extractor_from_args,
    feature_folder,
)
from extraction.records import differences_from_training
from extraction.windows import Window
from modes.common import progress_setting, to_device
from modes.evaluate import assemble_rows
from recipes import RECIPES
from reporting.timeline import video_timeline, write_parsed_video
from utils import checkpoint
from utils.errors import UsageError, UserError
from utils.runtime import print_warnings_plainly, resolve_device

SMOKE_TEST_WARNING = ("features from RANDOM weights (--random_weights, a smoke test): the events below say nothing "
                      "about the videos")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=main_DHHN.HelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files (any length of at least 1 s, with an audio track)")
    parser.add_argument("--checkpoint", default="models/DHHN",
                        help="<folder>/<name> of a trained run: its <name>_best_*.pt files in <folder> "
                             "(main_DHHN.py's --model_save_dir and --checkpoint)")
    parser.add_argument("--model", default=None, choices=tuple(RECIPES),
                        help="the model of the checkpoint (default: read from it; needed for original-release files)")
    parser.add_argument("--out_dir", default="parsed", help="folder of the results, one sub-folder per video")
    parser.add_argument("--features_dir", default=None,
                        help="feature cache in the official layout (default <out_dir>/features)")
    add_extraction_arguments(parser)
    parser.add_argument("--no_timeline", action="store_true", help="do not draw the timeline PNG")
    parser.add_argument("--progress", default="auto", choices=("auto", "on", "off"), help="progress bars")
    return parser


def checkpoint_location(prefix):
    """(--model_save_dir, --checkpoint) of `<folder>/<name>`."""
    folder, name = os.path.split(os.path.normpath(prefix))
    if not name:
        raise UsageError(f"--checkpoint {prefix}: give <folder>/<name>, e.g. models/DHHN")
    return folder or ".", name


def selected_checkpoint(folder, name):
    """The content of one selected checkpoint of the run (all share its args and config), or None
    (original-release files, or none)."""
    paths = sorted(glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(name)}_best_*.pt")))
    return checkpoint.load(paths[0]) if paths else None


def training_folders(content):
    """kind -> the feature folder the run was trained on (its args), for the kinds it recorded."""
    trained = recorded_flags(content or {})
    return {kind: trained.get(flag) for kind, flag in FEATURE_FLAGS.items() if trained.get(flag)}


def training_data_note(content, name):
    """A warning when the run was trained on the synthetic LLP (its parsing of real videos is meaningless)."""
    audio_dir = training_folders(content).get("audio")
    root = os.path.dirname(os.path.dirname(os.path.normpath(audio_dir))) if audio_dir else None
    if root and os.path.exists(os.path.join(root, COMPLETE_MARKER)):
        return (f"{name} was trained on the synthetic LLP ({root}): fine for trying the pipeline, meaningless on "
                "real videos; train on the real LLP features (README) for real parsing")
    return None


def check_extraction_matches_training(content, extractor):
    """Refuse features made otherwise than those the model learned on (when their folders say how)."""
    differences = differences_from_training(training_folders(content),
                                            {kind: extractor.record(kind) for kind in extractor.kinds})
    if differences:
        raise UsageError("the model was trained on features extracted otherwise:\n  " + "\n  ".join(differences)
                         + "\nextract with the training's settings (e.g. --vggish_postprocess) or use another model")


def model_arguments(args):
    """(the Config of evaluating --checkpoint with main_DHHN.py, resolved as main_DHHN does, the
    content of one of its selected checkpoints or None)."""
    folder, name = checkpoint_location(args.checkpoint)
    content = selected_checkpoint(folder, name)
    model = args.model or (content or {}).get("model_config", {}).get("model_name")
    if model is None:
        if not glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(name)}_*.pt")):
            raise UsageError(f"--checkpoint {args.checkpoint}: no checkpoint files {name}_best_*.pt in {folder}; "
                             "train first (README) or point to a trained run")
        raise UsageError(f"--checkpoint {args.checkpoint}: no model name recorded (original-release files?); "
                         f"give --model ({', '.join(RECIPES)})")
    if model not in RECIPES:
        raise UsageError(f"--checkpoint {args.checkpoint} holds a {model} model, which this project cannot build")
    model_config = resolve_config(main_DHHN.get_args_parser().parse_args(
        ["--mode", "test", "--model", model, "--model_save_dir", folder, "--checkpoint", name,
         "--device", args.device, "--progress", args.progress]))
    for role in RECIPES[model].required_roles():   # refused now, not after the extraction
        checkpoint.find_selected(folder, name, role, RECIPES[model].release_files)
    return model_config, content


def load_windows(features_dir, ids):
    """An LLPSplit of every window's features (weak labels unused, all zero). The folders hold
    features of this run's settings only (extract_videos claims them), random weights included."""
    folders = {kind: feature_folder(features_dir, kind) for kind in KINDS}
    features, layout = load_features(folders, ids, exact_names=True)
    return LLPSplit(name="videos", filenames=ids, labels=np.zeros((len(ids), NUM_CLASSES), dtype=np.float32),
                    feature_layout=layout, **features)


def run(args):
    features_dir = args.features_dir or os.path.join(args.out_dir, "features")
    # every bad video is named before the model loads, and nothing is written for a refused run
    checked = check_videos(args.videos, features_dir, KINDS, args.allow_variable_frame_rate)
    model_config, content = model_arguments(args)
    recipe = RECIPES[model_config.model.name]
    device = resolve_device(args.device)
    note = training_data_note(content, model_config.run.checkpoint)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if args.random_weights:
        print(f"warning: {SMOKE_TEST_WARNING}", file=sys.stderr)
    extractor = extractor_from_args(args, device)
    check_extraction_matches_training(content, extractor)
    progress = progress_setting(model_config)
    entries = extract_videos(extractor, args.videos, features_dir,
                             allow_variable_frame_rate=args.allow_variable_frame_rate, progress=progress,
                             checked=checked)
    names = [os.path.splitext(os.path.basename(path))[0] for path in args.videos]
    ids = [fid for name in names for fid in entries[name]["ids"]]
    split = load_windows(features_dir, ids)
    title, model = next(iter(assemble_rows(recipe, model_config, split, device).items()))
    outputs = engine.predict(model, to_device(model_config, split, device), model_config.run.eval_batch_size,
                             progress=progress, desc="parsing")
    outputs = {key: value.float().cpu().numpy() for key, value in outputs.items()}
    warnings = [text for text in (note, SMOKE_TEST_WARNING if args.random_weights else None) if text]
    write_results(args, entries, names, outputs, recipe, title, warnings)
    return entries


def write_results(args, entries, names, outputs, recipe, title, warnings):
    """Each video's windows (consecutive rows of `outputs`) as one timeline, written under --out_dir."""
    first = 0
    for path, name in zip(args.videos, names):
        entry = entries[name]
        count = len(entry["ids"])
        window_outputs = {key: value[first:first + count] for key, value in outputs.items()}
        first += count
        timeline = video_timeline(window_outputs, [Window(**record) for record in entry["windows"]], recipe.gating)
        description = {"source": entry["source"], "duration": entry["info"]["duration"], "plan": entry["plan"],
                       "windows": entry["windows"], "model": title, "model_name": recipe.name,
                       "checkpoint": args.checkpoint, "smoke_test": bool(args.random_weights), "warnings": warnings}
        written, events = write_parsed_video(os.path.join(args.out_dir, name), name, timeline, description,
                                             with_picture=not args.no_timeline)
        print(f"{path}: {len(events)} event(s) in {entry['info']['duration']:.1f} s -> "
              f"{os.path.dirname(written['events'])}")


def main(args):
    print_warnings_plainly()
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(main_DHHN.EXIT_USER_ERROR)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
