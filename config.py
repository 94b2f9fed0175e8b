"""The run's configuration: main_DHHN.py's flags resolved once, right after parsing, into one frozen
`Config` of four sections (data, optim, model, run).

Resolution fills what the command line left unset (data paths from --llp_root, the published
hyper-parameters of --model for --mode, flags that follow others such as DHHN's MGN learning
rates), refuses what cannot work, and happens here only: nothing later rewrites a setting. The
Config is recorded in every checkpoint and run record (`as_dict`) and compared field by field
when a run is resumed (`changed_fields`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from avvp_data.datasets import DATASETS, dataset_classes
from avvp_data.lfav import feature_dirs as lfav_feature_dirs
from avvp_data.lfav import label_paths as lfav_label_paths
from avvp_data.lfav_split import LFAVPaths
from avvp_data.llp import EVAL_AUDIO_2020_CSV
from dataloader import OFFICIAL_LAYOUT, LLPPaths
from recipes import RECIPES
from utils.errors import UsageError
from utils.runtime import MAX_SEED

# --eval_audio_version -> the file under <llp_root> (PROTOCOL.md §2)
EVAL_AUDIO_VERSIONS = {"current": OFFICIAL_LAYOUT["eval_audio_csv"], "2020": os.path.join("data", EVAL_AUDIO_2020_CSV)}
# the folder of published configurations, one <name>.flags file each (configs/valor.flags, ...)
PUBLISHED_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# another codebase's --model name -> (our model, flags it implies unless given, what it means)
MODEL_ALIASES = {
    "MMIL_Net": ("han", {"weak_loss": "global", "han_update": "sequential"},
                 "VALOR's name for its network: --model han --weak_loss global --han_update sequential "
                 "(PROTOCOL.md §13)"),
}


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where its inputs are and how they are held in memory (PROTOCOL.md §2, §13, §16).
    With --dataset lfav the LLP-only fields (LLP_ONLY_FLAGS) are None."""
    dataset: str
    lfav_root: str | None
    llp_root: str
    audio_dir: str
    video_dir: str
    st_dir: str
    label_train: str
    label_val: str
    label_test: str
    eval_audio_csv: str
    eval_visual_csv: str
    eval_audio_version: str
    feature_cache: str | None
    frame_dtype: str
    frame_pooling: str
    audio_pseudo_dir: str | None
    visual_pseudo_dir: str | None
    refined_labels: str | None
    allow_random_weight_features: bool
    allow_split_overlap: bool
    classes: str | None
    feature_names: str

    @property
    def paths(self):
        return LLPPaths(**{field.name: getattr(self, field.name) for field in dataclasses.fields(LLPPaths)})

    @property
    def lfav_paths(self):
        """The LFAVPaths of --dataset lfav: the feature folders and <lfav_root>'s label files."""
        return LFAVPaths(audio_dir=self.audio_dir, video_dir=self.video_dir, st_dir=self.st_dir,
                         labels=lfav_label_paths(self.lfav_root))

    @property
    def description(self):
        """The DatasetDescription of --dataset (avvp_data/datasets.py)."""
        return DATASETS[self.dataset]

    @property
    def class_names(self):
        """The names of the class axis: the dataset's, or those of the --classes file (avvp_data/datasets.py)."""
        return dataset_classes(self.classes, self.dataset)


@dataclass(frozen=True)
class OptimConfig:
    """How the nets are trained: losses, optimizer, schedule, precision (PROTOCOL.md §7, §10, §13)."""
    batch_size: int
    epochs: int
    lr: float
    lr_audio_mgn: float | None
    lr_visual_mgn: float | None
    lr_step: int
    lr_gamma: float
    optimizer: str
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    scheduler: str
    warm_up_epoch: int
    lr_min: float
    grad_norm: float
    weak_loss: str
    pseudo_weight: float
    cuda_graph: bool
    autocast: str


@dataclass(frozen=True)
class ModelConfig:
    """Which network, its settings and its ablation switches (None: the model has no such part)."""
    name: str
    hidden_dim: int | None
    nhead: int | None
    ff_dim: int | None
    num_layers: int | None
    han_update: str | None
    norm_where: str
    pseudo_mgn: bool | None
    hier_feat: bool | None
    hier_pred: bool | None
    audio_mgn: bool | None
    visual_mgn: bool | None
    rmse: bool | None


@dataclass(frozen=True)
class RunConfig:
    """What this invocation does and where it writes."""
    mode: str
    model_save_dir: str
    checkpoint: str
    seed: int
    device: str
    resume: bool
    log_interval: int
    log_seconds: float
    no_log: bool
    progress: str
    eval_batch_size: int
    unused_flags: str
    export_dir: str | None
    refine_source: str | None
    refine_out: str | None


SECTIONS = {"data": DataConfig, "optim": OptimConfig, "model": ModelConfig, "run": RunConfig}
# argparse dests whose Config field has another name
RENAMED = {"model": ("model", "name")}


def _flag_fields():
    """argparse dest -> (section, field) of every setting."""
    renamed_field = {field: dest for dest, field in RENAMED.items()}
    return {renamed_field.get((section, field.name), field.name): (section, field.name)
            for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)}


FIELD_OF_FLAG = _flag_fields()


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one main_DHHN.py run; see the module docstring."""
    data: DataConfig
    optim: OptimConfig
    model: ModelConfig
    run: RunConfig
    # (dest, flag, value) of what the command line gave, for the console; not a setting of its own
    given: tuple = ()

    def as_dict(self):
        """{section: {field: value}}, as recorded in checkpoints and run records."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in SECTIONS}

    def flags(self):
        """{argparse dest: value}: the settings under their command-line names."""
        return {dest: getattr(getattr(self, section), name) for dest, (section, name) in FIELD_OF_FLAG.items()}

    @classmethod
    def from_flags(cls, values, given=()):
        """A Config from {argparse dest: value} holding every flag of main_DHHN.py."""
        sections = {section: {} for section in SECTIONS}
        for dest, value in values.items():
            section, name = FIELD_OF_FLAG[dest]
            sections[section][name] = value
        return cls(**{section: SECTIONS[section](**fields) for section, fields in sections.items()},
                   given=tuple(given))


def recorded_flags(content):
    """{argparse dest: value} of what a checkpoint or run record holds: its "config" sections, or
    the flat "args" of files written before configs were recorded."""
    if "config" in content:
        return {dest: content["config"][section][name] for dest, (section, name) in FIELD_OF_FLAG.items()
                if name in content["config"].get(section, {})}
    return dict(content.get("args", {}))


def changed_fields(recorded, config, ignore=(), comparable=None):
    """["section.field old -> new", ...] where `config` differs from `recorded` ({dest: value} as
    `recorded_flags` returns), skipping the dests in `ignore` and those `recorded` does not hold.
    comparable(dest, value): what to compare (e.g. absolute paths); identity by default."""
    comparable = comparable or (lambda dest, value: value)
    changes = []
    for dest, value in config.flags().items():
        if dest in ignore or dest not in recorded:
            continue
        if comparable(dest, recorded[dest]) != comparable(dest, value):
            section, name = FIELD_OF_FLAG[dest]
            changes.append(f"{section}.{name} {recorded[dest]!r} -> {value!r}")
    return changes


# ------------------------------------------------------------------------------------------------
# which flag acts in which mode

TRAINING_MODES = ("train", "retrain")
ALL_MODES = ("train", "retrain", "val", "test", "estimate_labels")
# argparse dest -> the modes in which it changes anything; a dest not listed acts in every mode (data
# paths, the network and its switches, the run's name, device and logging). PROTOCOL.md §7 (training),
# §10 (refinement), §13 (pseudo-labels).
FLAG_MODES = {
    **{field.name: TRAINING_MODES for field in dataclasses.fields(OptimConfig)},
    "audio_pseudo_dir": TRAINING_MODES, "visual_pseudo_dir": TRAINING_MODES, "pseudo_mgn": TRAINING_MODES,
    "refined_labels": ("retrain",),
    "resume": TRAINING_MODES, "log_interval": TRAINING_MODES,
    "export_dir": ("val", "test"),
    "refine_source": ("estimate_labels",), "refine_out": ("estimate_labels",),
}
# VALOR's scripts/test_valor*.sh pass the pseudo-label folders at test, where nothing reads them
PASSED_BY_VALORS_TEST_SCRIPTS = ("audio_pseudo_dir", "visual_pseudo_dir")
# optimisation flags that act only under one --scheduler
SCHEDULER_FLAGS = {"lr_step": "steplr", "lr_gamma": "steplr", "warm_up_epoch": "warm_up_cos_anneal",
                   "lr_min": "warm_up_cos_anneal"}


def acts_in(dest, mode):
    """Whether the flag `dest` changes anything in `mode` (FLAG_MODES)."""
    return mode in FLAG_MODES.get(dest, ALL_MODES)


def flag_modes_help(dest):
    """The "train/retrain: " that the help text of a flag acting in some modes only starts with."""
    modes = FLAG_MODES.get(dest, ALL_MODES)
    return "" if modes == ALL_MODES else "/".join(modes) + ": "


def check_flags_act(values, given):
    """Refuse (UsageError) every given flag that does nothing: in this --mode (FLAG_MODES), or under
    this --scheduler (SCHEDULER_FLAGS). With --unused_flags note (the shell scripts, which pass their
    extra flags to every step) a flag of another mode is said in one line instead; so are the
    pseudo-label folders at val/test, which VALOR's published test scripts pass."""
    mode, problems = values["mode"], []
    for dest, flag, _ in given:
        if not acts_in(dest, mode):
            modes = "/".join(FLAG_MODES[dest])
            if values["unused_flags"] == "note" or (dest in PASSED_BY_VALORS_TEST_SCRIPTS and mode in ("val", "test")):
                print(f"{flag}: not used by --mode {mode} (it acts in --mode {modes})")
            else:
                problems.append(f"{flag}: does nothing in --mode {mode} (it acts in --mode {modes})")
        elif dest in SCHEDULER_FLAGS and values["scheduler"] != SCHEDULER_FLAGS[dest]:
            problems.append(f"{flag}: does nothing with --scheduler {values['scheduler']} "
                            f"(it shapes --scheduler {SCHEDULER_FLAGS[dest]})")
    if problems:
        raise UsageError("; ".join(problems) + ". Drop them, or pick the mode or schedule they belong to")


def read_flags_file(path):
    """The command-line words of a .flags file: one flag and its value per line, # comments."""
    with open(path) as handle:
        lines = [line.split("#", 1)[0].strip() for line in handle]
    return [word for line in lines if line for word in line.split()]


def published_config_path(name):
    return os.path.join(PUBLISHED_CONFIGS_DIR, f"{name}.flags")


def flags_acting_in(words, mode, parser, leave_out=(), source="the flags"):
    """The main_DHHN.py command-line `words` that act in `mode` (acts_in), each flag with its value,
    in order; `parser` (main_DHHN.get_args_parser()) says what each flag sets and whether it takes a
    value. leave_out: flags the caller sets itself. A word that is no flag of the parser is a
    UsageError naming `source`."""
    action_of = {option: action for action in parser._actions for option in action.option_strings}
    kept, index = [], 0
    while index < len(words):
        flag = words[index].split("=", 1)[0]
        if flag not in action_of:
            raise UsageError(f"{source}: {words[index]} is not a flag of main_DHHN.py")
        action = action_of[flag]
        takes_value = action.nargs != 0 and "=" not in words[index]
        group = words[index:index + 1 + takes_value]
        if acts_in(action.dest, mode) and flag not in leave_out:
            kept += group
        index += len(group)
    return kept


def published_flags(name, mode, parser, leave_out=()):
    """The words of configs/<name>.flags that act in `mode` (flags_acting_in), e.g. the network flags
    only for --mode test. leave_out: flags the caller sets itself (a sweep sets --seed)."""
    path = published_config_path(name)
    if not os.path.isfile(path):
        known = sorted(entry.removesuffix(".flags") for entry in os.listdir(PUBLISHED_CONFIGS_DIR))
        raise UsageError(f"no published configuration {name!r} ({path}); known: {', '.join(known)}")
    return flags_acting_in(read_flags_file(path), mode, parser, leave_out, source=path)


# flags of LLP's files and of methods that exist for LLP only (refinement, the packed cache, the
# CUDA-graph step of fixed shapes): refused with --dataset lfav
LLP_ONLY_FLAGS = ("llp_root", "label_train", "label_val", "label_test", "eval_audio_csv", "eval_visual_csv",
                  "eval_audio_version", "feature_names", "feature_cache", "frame_dtype", "frame_pooling",
                  "refined_labels", "allow_random_weight_features",
                  "export_dir", "cuda_graph")
FEATURE_DIR_FLAGS = {"audio_dir": "audio", "video_dir": "frames", "st_dir": "snippets"}


def _resolve_dataset(values, given):
    """--dataset lfav: the feature folders from --lfav_root unless given, the LLP-only flags refused
    and recorded as None, the mode checked against what LFAV supports; --lfav_root with LLP refused."""
    description = DATASETS[values["dataset"]]
    given_dests = {dest: flag for dest, flag, _ in given}
    if values["dataset"] == "llp":
        if values["lfav_root"] is not None:
            raise UsageError("--lfav_root: only read with --dataset lfav")
        return False
    problems = [f"{given_dests[dest]}" for dest in LLP_ONLY_FLAGS if dest in given_dests]
    if problems:
        raise UsageError(f"{', '.join(problems)}: LLP only, nothing reads them with --dataset {description.name} "
                         "(its files are found under --lfav_root; PROTOCOL.md §16)")
    if values["mode"] not in description.modes:
        raise UsageError(f"--mode {values['mode']}: not available with --dataset {description.name} "
                         f"(it has {', '.join(description.modes)}); label refinement is defined on LLP")
    values["lfav_root"] = values["lfav_root"] or ""
    folders = lfav_feature_dirs(values["lfav_root"])
    for flag, kind in FEATURE_DIR_FLAGS.items():
        if values[flag] is None:
            values[flag] = folders[kind]
    for dest in LLP_ONLY_FLAGS:
        if dest not in FIELD_OF_FLAG or FIELD_OF_FLAG[dest][0] != "data":
            continue
        values[dest] = None
    return True


# ------------------------------------------------------------------------------------------------
# resolution: {argparse dest: value} as parsed -> Config

def _resolve_data_paths(values):
    """Fill every data flag left unset from --llp_root's official layout (the audio truth by
    --eval_audio_version); explicit flags win."""
    if values["eval_audio_csv"] is None:
        values["eval_audio_csv"] = os.path.join(values["llp_root"], EVAL_AUDIO_VERSIONS[values["eval_audio_version"]])
    elif values["eval_audio_version"] != "current":
        raise UsageError("--eval_audio_version picks the file under --llp_root; it cannot apply to an explicit "
                         "--eval_audio_csv (give one or the other)")
    official = LLPPaths.official(values["llp_root"])
    for flag in OFFICIAL_LAYOUT:
        if values[flag] is None:
            values[flag] = getattr(official, flag)


def _resolve_model_alias(values):
    """--model MMIL_Net (VALOR's scripts) becomes --model han with the flags VALOR's network and loss imply."""
    if values["model"] not in MODEL_ALIASES:
        return
    model, implied, _ = MODEL_ALIASES[values["model"]]
    for flag, value in implied.items():
        if values[flag] is None:
            values[flag] = value
    print(f"--model {values['model']}: --model {model} " + " ".join(f"--{flag} {values[flag]}" for flag in implied))
    values["model"] = model


def _resolve_training_losses(values):
    """--weak_loss defaults to all; --pseudo_weight to 1, and only with pseudo-labels."""
    if values["weak_loss"] is None:
        values["weak_loss"] = "all"
    has_pseudo = bool(values["audio_pseudo_dir"] or values["visual_pseudo_dir"])
    if not has_pseudo and values["mode"] in ("train", "retrain"):
        for flag in ("pseudo_weight", "pseudo_mgn"):
            if values[flag]:
                raise UsageError(f"--{flag}: no pseudo-labels to weigh; give --audio_pseudo_dir and/or "
                                 "--visual_pseudo_dir")
    if values["pseudo_weight"] is None:
        values["pseudo_weight"] = 1.0


def _check_numbers(values):
    """Flags whose values cannot work are refused before any work, naming the flag."""
    at_least_one = {"epochs": "--epochs", "batch_size": "--batch-size", "eval_batch_size": "--eval_batch_size",
                    "lr_step": "--lr_step"}
    problems = [f"{flag} {values[key]}: must be at least 1" for key, flag in at_least_one.items() if values[key] < 1]
    problems += [f"--{key} {values[key]}: must be positive"
                 for key in ("lr", "lr_audio_mgn", "lr_visual_mgn", "lr_gamma")
                 if values[key] is not None and not values[key] > 0]
    if not 0 <= values["seed"] <= MAX_SEED:
        problems.append(f"--seed {values['seed']}: must be in 0..{MAX_SEED}")
    if not values["log_seconds"] > 0:
        problems.append(f"--log_seconds {values['log_seconds']}: must be positive")
    if values["log_interval"] < 0:
        problems.append(f"--log-interval {values['log_interval']}: must be 0 (never) or more")
    problems += [f"--{key} {values[key]}: must be 0 or more"
                 for key in ("weight_decay", "grad_norm", "pseudo_weight", "lr_min", "warm_up_epoch")
                 if not values[key] >= 0]
    problems += [f"--{key} {values[key]}: must be in [0, 1)" for key in ("beta1", "beta2") if not 0 <= values[key] < 1]
    if not values["eps"] > 0:
        problems.append(f"--eps {values['eps']}: must be positive")
    if values["scheduler"] == "warm_up_cos_anneal" and values["warm_up_epoch"] >= values["epochs"]:
        problems.append(f"--warm_up_epoch {values['warm_up_epoch']}: must be below --epochs {values['epochs']} "
                        "(the cosine needs epochs after the warm-up)")
    problems += [f"--{key} {values[key]}: must be at least 1" for key in ("hidden_dim", "nhead", "ff_dim", "num_layers")
                 if values[key] is not None and values[key] < 1]
    if values["hidden_dim"] and values["nhead"] and values["hidden_dim"] % values["nhead"]:
        problems.append(f"--hidden_dim {values['hidden_dim']}: must be divisible by --nhead {values['nhead']}")
    if problems:
        raise UsageError("; ".join(problems))


def resolve_config(args, given=()):
    """The frozen Config of a parsed main_DHHN.py namespace (left unchanged): data paths from
    --llp_root, VALOR's model alias, the loss defaults, then the published values and switches of
    --model's recipe; impossible values are refused (UsageError naming the flag), and so are given
    flags that do nothing in the mode or schedule (`check_flags_act`). given: the (dest, flag, value)
    triples the command line set (main_DHHN.given_flags)."""
    values = dict(vars(args))
    if not _resolve_dataset(values, given):
        _resolve_data_paths(values)
    dataset_classes(values["classes"], values["dataset"])   # a bad class list is said now, before any work
    _resolve_model_alias(values)
    _resolve_training_losses(values)
    RECIPES[values["model"]].resolve_flags(values)
    _check_numbers(values)
    check_flags_act(values, given)
    return Config.from_flags(values, given)

