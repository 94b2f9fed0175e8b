"""What every mode shares: checking and loading the inputs, starting the run's records, and
loading a selected checkpoint into the model its recipe builds."""
import os
import re
import shutil
import time
from contextlib import contextmanager

import torch

import engine
from avvp_data.annotations import annotation_version
from avvp_data.datasets import check_same_classes, recorded_classes
from avvp_data.feature_cache import PackedFeatureCache, default_cache_dir
from avvp_data.lfav import MODALITIES as LFAV_MODALITIES
from avvp_data.lfav import LFAVDataError
from avvp_data.lfav_split import classes_without_positives, load_lfav_split, missing_inputs
from avvp_data.lfav_split import split_overlaps as lfav_split_overlaps
from avvp_data.llp import CLASSES, FEATURE_KINDS
from avvp_data.tensor_split import PaddedSplit, TensorSplit
from dataloader import load_split, split_overlaps
from engine.variable_length import evaluate_lfav
from extraction.records import refuse_random_weight_features
from nets.convert import load_any_state_dict
from recipes import RECIPES
from reporting.tables import format_lfav_table, format_table
from utils import checkpoint
from utils.errors import FileWriteError, LLPDataError, UsageError
from utils.eval_metrics import METRIC_KEYS
from utils.io import atomic_write_json, check_writable
from utils.lfav_metrics import RECORDED_KEYS as LFAV_RECORDED_KEYS
from utils.progress import heartbeat_for
from utils.run_lock import RunLock
from utils.runtime import provenance

PROGRESS_SETTINGS = {"auto": None, "on": True, "off": False}   # --progress
NO_CACHE = "none"   # --feature_cache none
# every --mode, as main_DHHN.MODES dispatches them: the <checkpoint>_<mode>_* records they write
RUN_MODES = ("train", "retrain", "val", "test", "estimate_labels")
RECORD_KINDS = ("args.json", "summary.json", "log.jsonl", "per_class.csv")
EVAL_FLAGS = ("eval_audio_csv", "eval_visual_csv")
PSEUDO_FLAGS = ("audio_pseudo_dir", "visual_pseudo_dir")
PREVIOUS_RUNS_FOLDER = "previous"
PUBLISHED_LAYOUT = {kind: shape for kind, (_, shape) in FEATURE_KINDS.items()}


def progress_setting(config):
    return PROGRESS_SETTINGS[config.run.progress]


def check_inputs(config, split_names):
    """Every file and folder the run needs exists; all problems reported at once, by flag."""
    if config.data.dataset == "lfav":
        problems = list(dict.fromkeys(problem for name in split_names
                                      for problem in missing_inputs(config.data.lfav_paths, name)))
        pseudo = [(flag, getattr(config.data, flag)) for flag in PSEUDO_FLAGS
                  if getattr(config.data, flag) and config.run.mode in ("train", "retrain")]
        problems += [f"--{flag} {folder}: folder not found" for flag, folder in pseudo if not os.path.isdir(folder)]
        if problems:
            raise UsageError("missing LFAV inputs (--lfav_root holds LFAV_dataset/ and feats/; PROTOCOL.md §16):\n  "
                             + "\n  ".join(problems))
        check_disjoint(config)
        return
    needed = [("audio_dir", True), ("video_dir", True), ("st_dir", True)]
    needed += [(f"label_{name}", False) for name in split_names]
    if any(name != "train" for name in split_names):
        needed += [(flag, False) for flag in EVAL_FLAGS]
    if config.run.mode in ("train", "retrain"):   # read only there (config.FLAG_MODES)
        needed += [(flag, True) for flag in PSEUDO_FLAGS if getattr(config.data, flag)]
    problems = []
    for flag, is_dir in needed:
        path = getattr(config.data, flag)
        if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
            kind = "folder" if is_dir else "file"
            problems.append(f"--{flag} {path}: " + (f"not a {kind}" if os.path.exists(path) else f"{kind} not found"))
    if problems:
        raise UsageError("missing inputs (see README, 'Real LLP'; --llp_root sets them all):\n  "
                         + "\n  ".join(problems))
    check_disjoint(config)
    used = refuse_random_weight_features([getattr(config.data, flag) for flag, is_dir in needed if is_dir],
                                         config.data.allow_random_weight_features)
    if used:
        print(f"warning: --allow_random_weight_features: {', '.join(used)} hold features of random weights")


def overlaps_of(config):
    """The pairs of the run's label files that share videos (dataloader.split_overlaps, or
    avvp_data/lfav_split.split_overlaps)."""
    if config.data.dataset == "lfav":
        return lfav_split_overlaps(config.data.lfav_paths)
    return split_overlaps(config.data.paths, by_id=config.data.feature_names == "youtube_id")


def check_disjoint(config):
    """Refuse splits that share videos, unless --allow_split_overlap, which prints each overlap."""
    overlaps = overlaps_of(config)
    if overlaps and not config.data.allow_split_overlap:
        raise UsageError("the splits are not disjoint: checkpoints would be selected on, or scores computed for, "
                         "videos of another split:\n  " + "\n  ".join(overlaps)
                         + "\ngive each split its own videos (--allow_split_overlap if you mean it)")
    for overlap in overlaps:
        print(f"warning: --allow_split_overlap: {overlap}")


def feature_cache(config):
    """The packed cache of --feature_cache: beside the feature folders by default, off with 'none'."""
    if config.data.feature_cache == NO_CACHE:
        return None
    return PackedFeatureCache(config.data.feature_cache or default_cache_dir(config.data.audio_dir))


def pseudo_label_dirs(config):
    """{"audio": folder, "visual": folder} of the segment pseudo-labels asked for (PROTOCOL.md §13)."""
    dirs = {"audio": config.data.audio_pseudo_dir, "visual": config.data.visual_pseudo_dir}
    return {modality: folder for modality, folder in dirs.items() if folder}


def load(config, split_name, with_pseudo_labels=False):
    """The LLPSplit `split_name` (train/val/test), with segment truth for val and test, and with the
    segment pseudo-labels of --audio_pseudo_dir / --visual_pseudo_dir when asked; with --dataset
    lfav, the LFAVSplit (avvp_data/lfav_split.py)."""
    started = time.time()
    print(f"{split_name}: loading labels, truth and features", flush=True)
    if config.data.dataset == "lfav":
        split = load_lfav_split(config.data.lfav_paths, split_name,
                                heartbeat=heartbeat_for(progress_setting(config), config.run.log_seconds),
                                classes=config.data.class_names,
                                pseudo_dirs=pseudo_label_dirs(config) if with_pseudo_labels else None)
        lengths = split.lengths
        print(f"{split_name}: {split.num_videos} LFAV videos of {min(lengths)}-{max(lengths)} s "
              f"({sum(lengths) / len(lengths):.0f} s on average) loaded and checked in {time.time() - started:.1f} s",
              flush=True)
        return split
    split = load_split(config.data.paths, split_name, cache=feature_cache(config),
                       frame_dtype=config.data.frame_dtype, pool_frames=config.data.frame_pooling == "load",
                       progress=progress_setting(config),
                       pseudo_dirs=pseudo_label_dirs(config) if with_pseudo_labels else None,
                       heartbeat=heartbeat_for(progress_setting(config), config.run.log_seconds),
                       classes=config.data.class_names, exact_names=config.data.feature_names == "filename")
    print(f"{split_name}: {split.num_videos} videos loaded and checked in {time.time() - started:.1f} s", flush=True)
    # the layout holds every kind's (rows, dim), so it also tells other sizes apart
    if split.feature_layout != PUBLISHED_LAYOUT:
        # allowed on purpose (other feature sets), but never silently: a wrong feature folder shows here
        formats = "; ".join(f"{kind} {text}" for kind, text in split.feature_formats().items())
        print(f"{split_name} features differ from the published ones ({formats}); the model is sized from the files")
    return split


def load_splits(config, with_pseudo_labels):
    """load() of every split of {split name: with_pseudo_labels}, in order; the bad inputs of all of
    them are reported together (a missing train file and a broken val file in one error), not one
    split per attempt."""
    splits, problems = [], []
    for split_name, with_pseudo in with_pseudo_labels.items():
        try:
            splits.append(load(config, split_name, with_pseudo))
        except (LLPDataError, LFAVDataError) as error:
            problems.append(f"{split_name}: {error}")
    if problems:
        raise LLPDataError("\n".join(problems))
    return splits


def to_device(config, split, device):
    """The split on `device` as batches are served from it: a TensorSplit of LLP's fixed-length
    videos, or a PaddedSplit of LFAV's, which also carries their per-modality weak labels."""
    if config.data.dataset == "lfav":
        data = PaddedSplit(split.name, split.filenames, split.videos, split.labels, device)
        for modality in LFAV_MODALITIES:
            data.add(f"{modality}_labels", torch.from_numpy(getattr(split, f"{modality}_labels")))
            if getattr(split, f"pseudo_{modality}") is not None:   # the criterion's pseudo_* terms (§13)
                data.add_sequences(f"{modality}_pseudo", getattr(split, f"pseudo_{modality}"))
        return data
    return TensorSplit(split, device, pool_frames=config.data.frame_pooling == "load")


def evaluate_model(config, recipe, model, data, split):
    """The metrics dict of `model` on a split with truth, as the dataset scores it: LLP's
    (utils/eval_metrics.py, the recipe's gating) or LFAV's (utils/lfav_metrics.py)."""
    if config.data.dataset == "lfav":
        return evaluate_lfav(model, split, data.device, config.run.eval_batch_size)
    return engine.evaluate(model, data, split.gt_audio, split.gt_visual, recipe.gating, config.run.eval_batch_size,
                           progress_setting(config))


def check_selectable(config, val_split):
    """LFAV's selection score holds the snippet mAP, which is NaN when a class has no positive
    snippet in val (its AP is 0/0): such a val split could never select a checkpoint, so it is
    refused before training, naming the classes."""
    if config.data.dataset != "lfav":
        return
    absent = classes_without_positives(val_split)
    if absent:
        named = "; ".join(f"{modality}: {', '.join(names)}" for modality, names in absent.items())
        raise UsageError(f"LFAV val: no positive snippet of {named}. Its snippet mAP is NaN, so LFAV's selection "
                         "score is NaN at every epoch and no checkpoint would be kept; give a val split that has "
                         "every class")


def record_path(config, kind):
    """<model_save_dir>/<checkpoint>_<mode>_<kind>: the run's records (args.json, summary.json, ...)."""
    return os.path.join(config.run.model_save_dir, f"{config.run.checkpoint}_{config.run.mode}_{kind}")


def headline(metrics):
    """The 10 published numbers (fractions) of a metrics dict, and LFAV's mAPs and selection score
    when it has them."""
    return {key: float(metrics[key]) for key in METRIC_KEYS + LFAV_RECORDED_KEYS if key in metrics}


def format_results(metrics, title):
    """The published table of a metrics (or headline) dict, with LFAV's mAP line when it has one."""
    return format_lfav_table(metrics, title) if "map_avg" in metrics else format_table(metrics, title)


def annotation_versions(config):
    """{flag: which published copy it is} of the eval files a run scores with (none for
    estimate_labels, which scores nothing); recorded in every args.json and summary (PROTOCOL.md §2)."""
    if config.run.mode == "estimate_labels" or config.data.dataset != "llp":
        return {}
    return {flag: annotation_version(getattr(config.data, flag)) for flag in EVAL_FLAGS}


def start_run(config, device, write_args=True):
    """Print what runs where and write <checkpoint>_<mode>_args.json first (or, write_args=False,
    later by `write_run_args`, once the mode cannot be refused any more); returns the provenance,
    which every summary records."""
    os.makedirs(config.run.model_save_dir, exist_ok=True)
    info = provenance(device, config.run.seed)
    info["annotations"] = annotation_versions(config)
    if config.data.allow_split_overlap:   # recorded, so that no table of such a run passes for a clean one
        info["split_overlaps"] = overlaps_of(config)
    title = RECIPES[config.model.name].title
    print(f"{title} {config.run.mode} | commit {info['git_commit']} | device {info['device']}")
    # the audio eval file was corrected upstream in 2024: say which copy produces the numbers
    for flag, version in info["annotations"].items():
        print(f"annotations: --{flag} {getattr(config.data, flag)}: {version}")
    args_file = record_path(config, "args.json")
    where = "not written (--no-log)" if config.run.no_log else args_file
    print(f"flags: {format_flags(config.given) or '(the defaults)'}; the full configuration: {where}")
    if write_args:
        write_run_args(config, info)
    return info


def write_run_args(config, info):
    """<checkpoint>_<mode>_args.json: the configuration and provenance of this run (not with --no-log)."""
    if not config.run.no_log:
        atomic_write_json({"config": config.as_dict(), "given": config.given, "provenance": info},
                          record_path(config, "args.json"))


def format_flags(given):
    """'--epochs 3 --lr 6e-05 --no_rmse' of the (dest, flag, value) triples given on the command line
    (Config.given); floats as short as they print, not 5.9999999999999995e-05; switches alone."""
    words = []
    for _, flag, value in given:
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, float):
            words.append(f"{flag} {value:.10g}")
        else:
            words.append(f"{flag} {value}")
    return " ".join(words)


def check_release_settings(recipe, path, state_dict, model_config):
    """A release file fixes its network's sizes (e.g. VALOR+'s 256 wide, 4 layers); flags that
    build another network are refused naming both, before load_state_dict's list of shapes."""
    if recipe.release_settings is None:
        return
    in_file = recipe.release_settings(state_dict)
    differ = {option: value for option, value in in_file.items() if model_config.get(option) != value}
    if differ:
        given = " ".join(f"--{option} {model_config.get(option)}" for option in differ)
        wanted = " ".join(f"--{option} {value}" for option, value in differ.items())
        raise checkpoint.CheckpointError(f"{path} holds a network of {wanted}; the flags build {given}: pass {wanted}")


def load_selected_model(recipe, config, role, split, device):
    """(model in eval mode, model_config) of the `role` checkpoint of --checkpoint, in the project's
    or the original release's format, built by `recipe`, for the features of `split` (an LLPSplit);
    a checkpoint of another model, or trained on another kind of features, is refused."""
    feature_dims = split.feature_dims()
    path = checkpoint.find_selected(config.run.model_save_dir, config.run.checkpoint, role, recipe.release_files)
    content = checkpoint.load(path)
    if "model" in content and "model_config" in content:
        model_config, state_dict = content["model_config"], content["model"]
    else:  # a raw state_dict saved by the original release: an LLP model
        model_config = {**recipe.model_config(config, feature_dims), "classes": list(CLASSES)}
        try:
            state_dict = load_any_state_dict(content, recipe.release_kind)
        except (KeyError, ValueError) as error:
            raise checkpoint.CheckpointError(f"{path}: {error}") from None
        check_release_settings(recipe, path, content, model_config)
    if model_config.get("model_name") != recipe.name:
        raise checkpoint.CheckpointError(
            f"{path} holds a {model_config.get('model_name')} model, not a --model {recipe.name} one; "
            f"pass --model {model_config.get('model_name')} or another --checkpoint")
    check_same_classes(recorded_classes(model_config), split.classes, path, checkpoint.CheckpointError)
    if dict(model_config["feature_dims"]) != dict(feature_dims):
        raise checkpoint.CheckpointError(
            f"{path} was trained on feature sizes {model_config['feature_dims']}, the data has {dict(feature_dims)}")
    trained_on, data_formats = model_config.get("feature_formats"), split.feature_formats()   # absent in release files
    if None not in (trained_on, data_formats) and trained_on != data_formats:
        raise checkpoint.CheckpointError(f"{path} was trained on other features: {trained_on}; "
                                         f"the data has {data_formats}")
    model = recipe.build_model(model_config)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:   # missing / unexpected keys or shapes
        raise checkpoint.CheckpointError(f"{path} does not fit a {model_config['model_name']} model: {error}") from None
    return model.to(device).eval(), model_config


EVALUATION_MODES = ("val", "test")
# the modes that only read the checkpoints of a run that exists
READING_MODES = EVALUATION_MODES + ("estimate_labels",)


@contextmanager
def exclusive_run(config):
    """Hold the lock of this run's name (utils/run_lock.py) after checking that --model_save_dir can
    be written, so that a read-only folder or a concurrent run is reported before any work.

    One exception: val/test with --no-log write nothing there, so they may score checkpoints in a
    read-only folder (e.g. published weights); nobody can be training into such a folder."""
    check_run_name(config)
    if config.run.mode in READING_MODES and not os.path.isdir(config.run.model_save_dir):
        # a mistyped folder is named, and not created by the lock below
        raise UsageError(f"--model_save_dir {config.run.model_save_dir}: no such folder, so no checkpoint "
                         f"{config.run.checkpoint} to read (--mode {config.run.mode} reads a trained run's)")
    try:
        check_writable(config.run.model_save_dir)
    except FileWriteError:
        if not (config.run.no_log and config.run.mode in EVALUATION_MODES):
            raise
        print(f"--model_save_dir {config.run.model_save_dir} is read-only: scoring its checkpoints without a run lock")
        yield
        return
    with RunLock(config.run.model_save_dir, config.run.checkpoint, config.run.mode):
        remove_stale_temp_files(config.run.model_save_dir, config.run.checkpoint)
        yield


def _run_file_pattern(name):
    """The names of the files a run called `name` writes (run_files)."""
    return (re.escape(name) + r"_(best_[a-z]+\.pt|last\.pt|refined_labels\.(pkl|csv)|"
            rf"({'|'.join(RUN_MODES)})_({'|'.join(map(re.escape, RECORD_KINDS))}))")


def check_run_name(config):
    """--checkpoint names files in --model_save_dir, a folder: both refused, naming the flag, when
    they cannot be that."""
    name, save_dir = config.run.checkpoint, config.run.model_save_dir
    if not name or name != os.path.basename(name) or name in (".", ".."):
        raise UsageError(f"--checkpoint {name!r}: give the run a name without a folder (e.g. DHHN); the folder is "
                         "--model_save_dir")
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise UsageError(f"--model_save_dir {save_dir}: is a file, not a folder")


def run_files(save_dir, name):
    """Every file that a run called `name` writes in `save_dir` (checkpoints, records, flags), by
    exact pattern: a run "DHHN" never claims the files of a run "DHHN_seed2"."""
    pattern = re.compile(_run_file_pattern(name))
    if not os.path.isdir(save_dir):
        return []
    return sorted(os.path.join(save_dir, entry) for entry in os.listdir(save_dir) if pattern.fullmatch(entry))


def remove_stale_temp_files(save_dir, name):
    """Remove the temp files that an atomic write of run `name` left when its process was killed
    (kill -9, a lost node: utils/io.atomic_write's `.<file>.<random>.tmp`, up to the size of a
    _last.pt). Called under the run's lock, so no live write of this run can own one; another run's
    files never match."""
    pattern = re.compile(r"\." + _run_file_pattern(name) + r"\.[A-Za-z0-9_]+\.tmp")
    stale = sorted(entry for entry in os.listdir(save_dir) if pattern.fullmatch(entry))
    for entry in stale:
        os.remove(os.path.join(save_dir, entry))
    if stale:
        print(f"removed {len(stale)} temp file(s) that a killed write of --checkpoint {name} left: {', '.join(stale)}")


def move_aside_previous_run(config):
    """A new training run under the name of an earlier one keeps the earlier files: they move to
    <model_save_dir>/previous/<checkpoint>_<time>/, and the move is printed. Returns that folder
    (None when there was nothing to keep)."""
    save_dir, name = config.run.model_save_dir, config.run.checkpoint
    files = run_files(save_dir, name)
    if not files:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(save_dir, PREVIOUS_RUNS_FOLDER, f"{name}_{stamp}")
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(save_dir, PREVIOUS_RUNS_FOLDER, f"{name}_{stamp}_{suffix}")
    os.makedirs(target)
    for path in files:
        shutil.move(path, os.path.join(target, os.path.basename(path)))
    print(f"--checkpoint {name} was used before in {save_dir}: its {len(files)} file(s) moved to {target}")
    return target
