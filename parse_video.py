"""Parse your own videos with a trained model: features, model, events, timeline.

    python parse_video.py my.mp4 other.mkv --checkpoint models/DHHN
    python parse_video.py my.mp4 --checkpoint VALOR++      # a release scripts/download_models.py installed

For each video: the features the model was trained on are extracted as for LLP or as VALOR's
preprocessing makes CLAP/CLIP features (scripts/extract_features.py; cached under --features_dir
and reused while the file is unchanged), the model of --checkpoint parses
every 10-s window (the dual DHHN, or the first row of any other model's evaluation), and the
windows are stitched into one timeline (docs/PROTOCOL.md §15). Written per video under
--out_dir/<name>/: <name>_events.json (class, modality, onset, offset, confidence),
<name>_audio.csv and <name>_visual.csv (the eval-file format), <name>_timeline.png.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

import engine
import main_DHHN
from avvp_data.datasets import recorded_classes
from avvp_data.llp import CLASSES
from avvp_data.synthetic_llp import COMPLETE_MARKER
from config import published_flags, recorded_flags, resolve_config
from dataloader import FEATURE_FLAGS, LLPSplit, load_features
from extraction.extractor import (
    KIND_LAYOUT,
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
from recipes.releases import FEATURE_SETS, RELEASES, record_path, release_of_file
from reporting.timeline import video_timeline, write_parsed_video
from utils import checkpoint
from utils.errors import UsageError, UserError
from utils.runtime import print_warnings_plainly, resolve_device

DEFAULT_MODELS_DIR = "models"   # where scripts/download_models.py installs the releases
SMOKE_TEST_WARNING = ("features from RANDOM weights (--random_weights, a smoke test): the events below say nothing "
                      "about the videos")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=main_DHHN.HelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files (any length of at least 1 s, with an audio track)")
    parser.add_argument("--checkpoint", default="models/DHHN",
                        help="<folder>/<name> of a trained run: its <name>_best_*.pt files in <folder> "
                             "(main_DHHN.py's --model_save_dir and --checkpoint); or a released model: its name "
                             f"({', '.join(RELEASES)}: in {DEFAULT_MODELS_DIR}/, from scripts/download_models.py), "
                             "its file (models/model_VALOR++/checkpoint_best.pt) or <folder>/<its --checkpoint>")
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


def check_extraction_matches_training(content, extractor, inputs):
    """Refuse features made otherwise than those the model learned on (when their folders say how);
    inputs: {model input: extraction kind}."""
    differences = differences_from_training(training_folders(content),
                                            {feeds: extractor.record(kind) for feeds, kind in inputs.items()})
    if differences:
        raise UsageError("the model was trained on features extracted otherwise:\n  " + "\n  ".join(differences)
                         + "\nextract with the training's settings (e.g. --vggish_postprocess) or use another model")


def installed_release(text):
    """(folder, Release, its record or None) when --checkpoint names a released model (its name, its
    file, or <folder>/<its --checkpoint>) whose file is there; None otherwise."""
    if text in RELEASES:
        folder, release = DEFAULT_MODELS_DIR, RELEASES[text]
    elif release_of_file(text) is not None:
        release = release_of_file(text)
        folder = os.path.normpath(text)[:-len(os.path.normpath(release.path))].rstrip(os.sep) or "."
    else:
        folder, name = os.path.split(os.path.normpath(text))
        release = next((release for release in RELEASES.values() if release.checkpoint == name), None)
        folder = folder or "."
    if release is None:
        return None
    path = os.path.join(folder, release.path)
    if not os.path.isfile(path):
        raise UsageError(f"--checkpoint {text}: {release.name} is not installed at {path}; run "
                         f"python scripts/download_models.py {release.name} --models_dir {folder}")
    record = None
    if os.path.isfile(record_path(folder, release)):
        with open(record_path(folder, release)) as handle:
            record = json.load(handle)
    return folder, release, record


def release_arguments(args, folder, release, record):
    """(Config, model inputs) of a released model: its network flags as scripts/download_models.py
    recorded them (the registry's when the file was placed by hand), its training features."""
    flags = record["network_flags"] if record else ["--model", release.model] + (
        published_flags(release.config, "test", main_DHHN.get_args_parser(), leave_out=("--seed",))
        if release.config else [])
    model_config = resolve_config(main_DHHN.get_args_parser().parse_args(
        ["--mode", "test", *flags, "--model_save_dir", folder, "--checkpoint", release.checkpoint,
         "--device", args.device, "--progress", args.progress]))
    return model_config, dict(FEATURE_SETS[release.features])


def trained_inputs(content):
    """{model input: extraction kind} a run of this project was trained on, from the feature
    layouts its checkpoint records ("(64, 768): CLAP feature maps ..."); the official kinds when it
    records none."""
    formats = (content or {}).get("model_config", {}).get("feature_formats") or {}
    inputs = {}
    for feeds, text in formats.items():
        # "(T, 512): ..." (LFAV's per-snippet features, avvp_data/lfav_split.py) has no fixed rows
        numbers = text.split(")")[0].strip("(").split(",")
        shape = tuple(int(number) for number in numbers) if all(n.strip().isdigit() for n in numbers) else None
        inputs[feeds] = next((kind for kind, (input_kind, _, rows) in KIND_LAYOUT.items()
                              if input_kind == feeds and tuple(rows) == shape), None)
        if inputs[feeds] is None:
            raise UsageError(f"the model was trained on {feeds} features {text}, which this project cannot extract "
                             "from videos")
    return {feeds: inputs.get(feeds, feeds) for feeds in FEATURE_FLAGS}


def model_arguments(args):
    """(the Config of evaluating --checkpoint with main_DHHN.py, resolved as main_DHHN does, the
    content of one of its selected checkpoints or None, {model input: extraction kind} of the
    features it was trained on, the release it is or None)."""
    release = installed_release(args.checkpoint)
    if release is not None:
        folder, found, record = release
        model_config, inputs = release_arguments(args, folder, found, record)
        return model_config, None, inputs, (found, record)
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
    return model_config, content, trained_inputs(content), None


def load_windows(features_dir, ids, inputs, classes):
    """An LLPSplit of every window's features (weak labels unused, all zero), each model input from
    the folder of its extraction kind ({input: kind}), over the model's `classes`. The folders hold
    features of this run's settings only (extract_videos claims them), random weights included."""
    folders = {feeds: feature_folder(features_dir, kind) for feeds, kind in inputs.items()}
    features, layout = load_features(folders, ids, exact_names=True)
    return LLPSplit(name="videos", filenames=ids, labels=np.zeros((len(ids), len(classes)), dtype=np.float32),
                    feature_layout=layout, classes=tuple(classes), **features)


def run(args):
    features_dir = args.features_dir or os.path.join(args.out_dir, "features")
    # which features: those the model was trained on (its records, or the release's)
    model_config, content, inputs, release = model_arguments(args)
    kinds = tuple(inputs.values())
    # every bad video is named before the model loads, and nothing is written for a refused run
    checked = check_videos(args.videos, features_dir, kinds, args.allow_variable_frame_rate)
    recipe = RECIPES[model_config.model.name]
    device = resolve_device(args.device)
    note = training_data_note(content, model_config.run.checkpoint)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if args.random_weights:
        print(f"warning: {SMOKE_TEST_WARNING}", file=sys.stderr)
    extractor = extractor_from_args(args, device, kinds)
    check_extraction_matches_training(content, extractor, inputs)
    progress = progress_setting(model_config)
    entries = extract_videos(extractor, args.videos, features_dir,
                             allow_variable_frame_rate=args.allow_variable_frame_rate, progress=progress,
                             checked=checked)
    names = [os.path.splitext(os.path.basename(path))[0] for path in args.videos]
    ids = [fid for name in names for fid in entries[name]["ids"]]
    # a run of this project parses the classes it was trained on; a release LLP's
    classes = recorded_classes(content["model_config"]) if content else CLASSES
    split = load_windows(features_dir, ids, inputs, classes)
    title, model = next(iter(assemble_rows(recipe, model_config, split, device).items()))
    if release is not None:   # the recipe's row title describes a run of this project
        title = f"{release[0].name}, released ({release[0].paper})"
    outputs = engine.predict(model, to_device(model_config, split, device), model_config.run.eval_batch_size,
                             progress=progress, desc="parsing")
    outputs = {key: value.float().cpu().numpy() for key, value in outputs.items()}
    warnings = [text for text in (note, SMOKE_TEST_WARNING if args.random_weights else None) if text]
    source = model_source(args, model_config, release)
    write_results(args, entries, names, outputs, recipe, title, warnings, classes,
                  {"model_source": source, "features": {feeds: describe_kind(extractor, kind)
                                                        for feeds, kind in inputs.items()}})
    return entries


def model_source(args, model_config, release):
    """Where the model comes from, for the events file: a release (its paper, source, SHA-256) or
    a run of this project (its checkpoint files)."""
    if release is not None:
        found, record = release
        return {"release": found.name, "paper": found.paper, "source": (record or {}).get("source"),
                "sha256": (record or {}).get("sha256"),
                "note": None if record else "placed by hand (no record of scripts/download_models.py)"}
    return {"run": os.path.join(model_config.run.model_save_dir, model_config.run.checkpoint),
            "trained_by": "main_DHHN.py (this project)"}


def describe_kind(extractor, kind):
    """What made one model input: the network, its weights and the preprocessing (the record)."""
    record = extractor.record(kind)
    return {"kind": kind, "network": record["network"], "weights": record["weights"], "settings": record["settings"]}


def write_results(args, entries, names, outputs, recipe, title, warnings, classes, provenance):
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
                       "checkpoint": args.checkpoint, **provenance, "smoke_test": bool(args.random_weights),
                       "warnings": warnings}
        written, events = write_parsed_video(os.path.join(args.out_dir, name), name, timeline, description,
                                             with_picture=not args.no_timeline, classes=classes)
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
