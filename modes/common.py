"""What every mode shares: checking and loading the inputs, starting the run's records, and
loading a selected checkpoint into the model its recipe builds."""
import os
import re
import shutil
import time
from contextlib import contextmanager

from dataloader import LLPPaths, load_split
from extraction.records import refuse_random_weight_features
from nets.convert import load_any_state_dict
from utils import checkpoint
from avvp_data.annotations import annotation_version
from avvp_data.llp import FEATURE_KINDS
from utils.eval_metrics import METRIC_KEYS
from utils.errors import FileWriteError, UsageError
from avvp_data.feature_cache import PackedFeatureCache, default_cache_dir
from utils.io import atomic_write_json, check_writable
from utils.run_lock import RunLock
from utils.runtime import provenance
from avvp_data.tensor_split import TensorSplit

PROGRESS_SETTINGS = {"auto": None, "on": True, "off": False}   # --progress
NO_CACHE = "none"   # --feature_cache none
# every --mode, as main_DHHN.MODES dispatches them: the <checkpoint>_<mode>_* records they write
RUN_MODES = ("train", "retrain", "val", "test", "estimate_labels")
RECORD_KINDS = ("args.json", "summary.json", "log.jsonl", "per_class.csv")
EVAL_FLAGS = ("eval_audio_csv", "eval_visual_csv")
PREVIOUS_RUNS_FOLDER = "previous"
PUBLISHED_LAYOUT = {kind: shape for kind, (_, shape) in FEATURE_KINDS.items()}


def progress_setting(args):
    return PROGRESS_SETTINGS[args.progress]


def check_inputs(args, split_names):
    """Every file and folder the run needs exists; all problems reported at once, by flag."""
    needed = [("audio_dir", True), ("video_dir", True), ("st_dir", True)]
    needed += [(f"label_{name}", False) for name in split_names]
    if any(name != "train" for name in split_names):
        needed += [(flag, False) for flag in EVAL_FLAGS]
    problems = []
    for flag, is_dir in needed:
        path = getattr(args, flag)
        if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
            problems.append(f"--{flag} {path}: {'folder' if is_dir else 'file'} not found")
    if problems:
        raise UsageError("missing inputs (see README 'Real LLP'; --llp_root sets them all):\n  "
                         + "\n  ".join(problems))
    used = refuse_random_weight_features([getattr(args, flag) for flag, is_dir in needed if is_dir],
                                         args.allow_random_weight_features)
    if used:
        print(f"warning: --allow_random_weight_features: {', '.join(used)} hold features of random weights")


def feature_cache(args):
    """The packed cache of --feature_cache: beside the feature folders by default, off with 'none'."""
    if args.feature_cache == NO_CACHE:
        return None
    return PackedFeatureCache(args.feature_cache or default_cache_dir(args.audio_dir))


def pseudo_label_dirs(args):
    """{"audio": folder, "visual": folder} of the segment pseudo-labels asked for (PROTOCOL.md §13)."""
    dirs = {"audio": args.audio_pseudo_dir, "visual": args.visual_pseudo_dir}
    return {modality: folder for modality, folder in dirs.items() if folder}


def load(args, split_name, with_pseudo_labels=False):
    """The LLPSplit `split_name` (train/val/test), with segment truth for val and test, and with the
    segment pseudo-labels of --audio_pseudo_dir / --visual_pseudo_dir when asked."""
    split = load_split(LLPPaths.from_args(args), split_name, cache=feature_cache(args),
                       frame_dtype=args.frame_dtype, pool_frames=args.frame_pooling == "load",
                       progress=progress_setting(args),
                       pseudo_dirs=pseudo_label_dirs(args) if with_pseudo_labels else None)
    # the layout holds every kind's (rows, dim), so it also tells other sizes apart
    if split.feature_layout != PUBLISHED_LAYOUT:
        # allowed on purpose (other feature sets), but never silently: a wrong feature folder shows here
        formats = "; ".join(f"{kind} {text}" for kind, text in split.feature_formats().items())
        print(f"{split_name} features differ from the published ones ({formats}); the model is sized from the files")
    return split


def to_device(args, split, device):
    return TensorSplit(split, device, pool_frames=args.frame_pooling == "load")


def record_path(args, kind):
    """<model_save_dir>/<checkpoint>_<mode>_<kind>: the run's records (args.json, summary.json, ...)."""
    return os.path.join(args.model_save_dir, f"{args.checkpoint}_{args.mode}_{kind}")


def headline(metrics):
    """The 10 published numbers (fractions) of a metrics dict."""
    return {key: float(metrics[key]) for key in METRIC_KEYS}


def annotation_versions(args):
    """{flag: which published copy it is} of the eval files a run scores with (none for
    estimate_labels, which scores nothing); recorded in every args.json and summary (PROTOCOL.md §2)."""
    if args.mode == "estimate_labels":
        return {}
    return {flag: annotation_version(getattr(args, flag)) for flag in EVAL_FLAGS}


def start_run(args, device):
    """Print what runs where and write <checkpoint>_<mode>_args.json first; returns the provenance,
    which every summary records."""
    os.makedirs(args.model_save_dir, exist_ok=True)
    info = provenance(device, args.seed)
    info["annotations"] = annotation_versions(args)
    print(f"DHHN {args.mode} | model {args.model} | commit {info['git_commit']} | device {info['device']}")
    # the audio eval file was corrected upstream in 2024: say which copy produces the numbers
    for version in info["annotations"].values():
        print(f"annotations: {version}")
    print("args: " + " ".join(f"{key}={value}" for key, value in sorted(vars(args).items())))
    if not args.no_log:
        atomic_write_json({"args": vars(args), "provenance": info}, record_path(args, "args.json"))
    return info


def load_selected_model(recipe, args, role, split, device):
    """(model in eval mode, model_config) of the `role` checkpoint of --checkpoint, in the project's
    or the original release's format, built by `recipe`, for the features of `split` (an LLPSplit);
    a checkpoint of another model, or trained on another kind of features, is refused."""
    feature_dims = split.feature_dims()
    path = checkpoint.find_selected(args.model_save_dir, args.checkpoint, role)
    content = checkpoint.load(path)
    if "model" in content and "model_config" in content:
        config, state_dict = content["model_config"], content["model"]
    else:  # a raw state_dict saved by the original release
        config = recipe.model_config(args, feature_dims)
        try:
            state_dict = load_any_state_dict(content, recipe.release_kind)
        except (KeyError, ValueError) as error:
            raise checkpoint.CheckpointError(f"{path}: {error}") from None
    if config.get("model_name") != recipe.name:
        raise checkpoint.CheckpointError(
            f"{path} holds a {config.get('model_name')} model, not a --model {recipe.name} one; "
            f"pass --model {config.get('model_name')} or another --checkpoint")
    if dict(config["feature_dims"]) != dict(feature_dims):
        raise checkpoint.CheckpointError(
            f"{path} was trained on feature sizes {config['feature_dims']}, the data has {dict(feature_dims)}")
    trained_on, data_formats = config.get("feature_formats"), split.feature_formats()   # absent in release files
    if None not in (trained_on, data_formats) and trained_on != data_formats:
        raise checkpoint.CheckpointError(f"{path} was trained on other features: {trained_on}; the data has {data_formats}")
    model = recipe.build_model(config)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:   # missing / unexpected keys or shapes
        raise checkpoint.CheckpointError(f"{path} does not fit a {config['model_name']} model: {error}") from None
    return model.to(device).eval(), config


EVALUATION_MODES = ("val", "test")


@contextmanager
def exclusive_run(args):
    """Hold the lock of this run's name (utils/run_lock.py) after checking that --model_save_dir can
    be written, so that a read-only folder or a concurrent run is reported before any work.

    One exception: val/test with --no-log write nothing there, so they may score checkpoints in a
    read-only folder (e.g. published weights); nobody can be training into such a folder."""
    try:
        check_writable(args.model_save_dir)
    except FileWriteError:
        if not (args.no_log and args.mode in EVALUATION_MODES):
            raise
        print(f"--model_save_dir {args.model_save_dir} is read-only: scoring its checkpoints without a run lock")
        yield
        return
    with RunLock(args.model_save_dir, args.checkpoint, args.mode):
        yield


def run_files(save_dir, name):
    """Every file that a run called `name` writes in `save_dir` (checkpoints, records, flags), by
    exact pattern: a run "DHHN" never claims the files of a run "DHHN_seed2"."""
    pattern = re.compile(re.escape(name) + r"_(best_[a-z]+\.pt|last\.pt|refined_labels\.(pkl|csv)|"
                         rf"({'|'.join(RUN_MODES)})_({'|'.join(map(re.escape, RECORD_KINDS))}))")
    if not os.path.isdir(save_dir):
        return []
    return sorted(os.path.join(save_dir, entry) for entry in os.listdir(save_dir) if pattern.fullmatch(entry))


def move_aside_previous_run(args):
    """A new training run under the name of an earlier one keeps the earlier files: they move to
    <model_save_dir>/previous/<checkpoint>_<time>/, and the move is printed. Returns that folder
    (None when there was nothing to keep)."""
    files = run_files(args.model_save_dir, args.checkpoint)
    if not files:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(args.model_save_dir, PREVIOUS_RUNS_FOLDER, f"{args.checkpoint}_{stamp}")
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(args.model_save_dir, PREVIOUS_RUNS_FOLDER, f"{args.checkpoint}_{stamp}_{suffix}")
    os.makedirs(target)
    for path in files:
        shutil.move(path, os.path.join(target, os.path.basename(path)))
    print(f"--checkpoint {args.checkpoint} was used before in {args.model_save_dir}: its {len(files)} file(s) "
          f"moved to {target}")
    return target
