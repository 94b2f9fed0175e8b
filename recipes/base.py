"""What a model recipe is: everything that differs between models, in one object per model.

A recipe answers every model-specific question the modes ask (DETR's `build(args)` returning the
model, its criterion and its post-processing together): how to build the parsing network from a
recorded config, which training-only nets and loss terms it uses, which checkpoints training
keeps and by which val score, which rows val/test report, how segments are gated at evaluation,
which ablation switches exist, and the published hyper-parameters per mode. Nothing outside
`recipes/` branches on a model name.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from avvp_data.llp import MODALITIES
from recipes.losses import make_targets, modality_targets, parsing_losses, segment_pseudo_label_loss
from utils.errors import UsageError

# every ablation switch of the command line (paper Table 2), by argparse dest; a recipe lists the
# ones its model has
ABLATION_SWITCHES = ("hier_feat", "hier_pred", "audio_mgn", "visual_mgn", "rmse")
# the optimisation flags a recipe gives published values for, per training mode
HYPER_PARAMETERS = ("batch_size", "epochs", "lr")
# settings of one model's network or losses (argparse dests, default None = the model's published
# value); a recipe lists the ones its model has with their published values, the others are refused
MODEL_OPTIONS = ("hidden_dim", "nhead", "ff_dim", "num_layers", "han_update", "pseudo_mgn")
# --weak_loss: which video-level BCE terms train the parsing network (PROTOCOL.md §7, §13)
WEAK_LOSSES = {"all": ("bce_audio", "bce_visual", "bce_global"), "global": ("bce_global",)}


@dataclass(frozen=True)
class SelectionRole:
    """A checkpoint kept during training, `<checkpoint>_best_<name>.pt`: saved after an epoch whose
    val metrics give a better `score` (on a tie too when `ties_to_later`); PROTOCOL.md §7, §11."""
    name: str
    score: Callable[[dict], float]
    ties_to_later: bool = False

    def improves(self, score, best):
        return score > best or (self.ties_to_later and score == best)


@dataclass(frozen=True)
class ReportRow:
    """A row of the val/test output: the audio predictions of the `audio_role` checkpoint and the
    visual ones of the `visual_role` checkpoint (the same role: one model). A row that is not
    `required` is skipped when its checkpoint is absent."""
    title: str
    audio_role: str
    visual_role: str
    required: bool = True

    @property
    def roles(self):
        return tuple(dict.fromkeys((self.audio_role, self.visual_role)))


class TrainingModule(nn.Module):
    """The nets one training step runs, as one module: the parsing network (`model`) and the
    recipe's training-only nets (`guides`, e.g. DHHN's MGNs), each a submodule under its name.

    `forward(batch)` runs them and returns every output the criterion needs (engine.TrainStep:
    `outputs = module(batch); losses = criterion(outputs, batch)`); this base runs the parsing
    network only. `nets` gives them by name, "model" first, in optimizer order: each has its own
    optimizer, learning rate and checkpoint entry.
    """

    def __init__(self, model, guides=None):
        super().__init__()
        self.model = model
        guides = dict(guides or {})
        for name, net in guides.items():
            self.add_module(name, net)
        self.net_names = ("model", *guides)

    @property
    def nets(self):
        return {name: getattr(self, name) for name in self.net_names}

    def forward(self, batch):
        """The parsing network's outputs; a batch of videos of different lengths carries the
        (B, T) "mask" of each one's own segments (avvp_data/tensor_split.PaddedSplit)."""
        if "mask" in batch:
            return self.model(batch["audio"], batch["frames"], batch["snippets"], batch["mask"])
        return self.model(batch["audio"], batch["frames"], batch["snippets"])


class WeakLabelCriterion:
    """The video-level loss every parsing model is trained with: BCE of the audio, visual and
    global predictions against their weak-label targets (bce_audio, bce_visual, bce_global; only
    bce_global with weak_loss="global", as VALOR trains); PROTOCOL.md §7 (targets, clamping) and
    §10 (refined targets when the batch carries flags). When the batch carries segment
    pseudo-labels ("audio_pseudo", "visual_pseudo", (B, 10, 25)), the segment terms pseudo_audio
    and pseudo_visual are added, each pseudo_weight x BCE of the segment probabilities
    (PROTOCOL.md §13), over each video's own segments in a padded batch (§16). A batch carrying
    per-modality weak labels ("audio_labels", "visual_labels": LFAV) trains the modality
    predictions on them (§16).

    `__call__(outputs, batch)` returns the named loss terms, in float32, from the outputs of the
    recipe's TrainingModule; it runs no network. Subclasses add their model's terms in
    `model_losses`.
    """

    def __init__(self, weak_loss="all", pseudo_weight=1.0):
        self.weak_loss = weak_loss
        self.pseudo_weight = pseudo_weight

    @staticmethod
    def targets(batch):
        """Targets of the batch: its modality weak labels where the dataset has them (LFAV,
        PROTOCOL.md §16), else the smoothed and optionally refined video labels (§7, §10)."""
        if "audio_labels" in batch:
            return modality_targets(batch["labels"], batch["audio_labels"], batch["visual_labels"])
        return make_targets(batch["labels"], batch.get("audio_flags"), batch.get("visual_flags"))

    def model_losses(self, outputs, batch):
        return parsing_losses(outputs, self.targets(batch), use_rmse=False)

    def __call__(self, outputs, batch):
        losses = self.model_losses(outputs, batch)
        dropped = set(WEAK_LOSSES["all"]) - set(WEAK_LOSSES[self.weak_loss])
        losses = {name: value for name, value in losses.items() if name not in dropped}
        for index, modality in enumerate(MODALITIES):   # frame_prob's modality axis (PROTOCOL.md §5)
            target = batch.get(f"{modality}_pseudo")
            if target is not None:
                losses[f"pseudo_{modality}"] = self.pseudo_weight * segment_pseudo_label_loss(
                    outputs["frame_prob"][:, :, index], target, batch.get("mask"))
        return losses


def criterion_settings(config):
    """The WeakLabelCriterion arguments every model shares, from the run's Config (config.py)."""
    return {"weak_loss": config.optim.weak_loss, "pseudo_weight": config.optim.pseudo_weight}


@dataclass(frozen=True)
class Recipe:
    """Everything model-specific; see the module docstring. `config` below is the run's frozen Config
    (config.py); `values` the {flag: value} dict that config.resolve_config turns into one."""
    name: str
    title: str                  # how outputs name the model: "DHHN train", "HAN test"
    help: str
    model_config: Callable      # (config, feature_dims) -> dict recorded in every checkpoint
    build_model: Callable       # model_config -> the parsing network (nn.Module)
    build_guides: Callable      # (config, feature_dims) -> {name: training-only net}, in optimizer order
    learning_rates: Callable    # config -> {net name: learning rate} for "model" and the guides
    criterion: Callable         # config -> a WeakLabelCriterion (or subclass)
    training_module: Callable   # (model, guides) -> the TrainingModule whose outputs the criterion reads
    gating: str                 # utils.eval_metrics.GATINGS
    selection: tuple            # SelectionRole, ...
    rows: tuple                 # ReportRow, ...; the first is the method's own row
    published: dict             # "train" / "retrain" -> {HYPER_PARAMETERS: value}
    release_kind: str           # nets.convert kind of the original release's checkpoint files
    switches: tuple = field(default=())   # the ABLATION_SWITCHES this model has
    options: dict = field(default_factory=dict)   # MODEL_OPTIONS this model has -> published value
    derive_flags: Callable = None   # (values, training_mode) -> None: fills flags that follow others (e.g. from --lr)
    # role -> ((path template under --model_save_dir with {name}, whose layout), ...): other codebases'
    # files of a selected model, raw state dicts that nets/convert.py reads (utils.checkpoint.find_selected)
    release_files: dict = field(default_factory=dict)
    release_settings: Callable = None   # a release state dict -> {MODEL_OPTIONS: value} its weights fix
    refine_source: str = "overall"  # the selected checkpoint estimate_labels judges labels with by default

    @property
    def role_names(self):
        return tuple(role.name for role in self.selection)

    def required_roles(self):
        """Selected checkpoints val/test cannot do without."""
        return tuple(dict.fromkeys(role for row in self.rows if row.required for role in row.roles))

    def resolve_flags(self, values):
        """In {flag: value} (config.resolve_config): fill unset optimisation flags with the published
        values of the mode (val, test and estimate_labels take train's) and the flags that follow
        them (derive_flags), refuse ablation switches the model does not have and record them as
        None (not applicable), fill or refuse the model's options."""
        training_mode = "retrain" if values["mode"] == "retrain" else "train"
        for key in HYPER_PARAMETERS:
            if values[key] is None:
                values[key] = self.published[training_mode][key]
        if self.derive_flags is not None:
            self.derive_flags(values, training_mode)
        if values["refine_source"] is None:
            values["refine_source"] = self.refine_source
        for switch in ABLATION_SWITCHES:
            if switch in self.switches:
                continue
            if values[switch] is False:
                raise UsageError(f"--no_{switch}: --model {self.name} has no such part to switch off")
            values[switch] = None
        for option in MODEL_OPTIONS:
            if option in self.options:
                if values[option] is None:
                    values[option] = self.options[option]
            elif values[option] not in (None, False):
                raise UsageError(f"--{option}: --model {self.name} has no such setting "
                                 f"(it has {', '.join('--' + name for name in self.options) or 'none'})")

    def check_role(self, flag, role):
        if role not in self.role_names:
            raise UsageError(f"{flag} {role}: --model {self.name} keeps the checkpoints "
                             f"{', '.join(self.role_names)}")


def feature_sizes_config(model_name, options=()):
    """model_config for a model that has no switches: its name, the feature sizes and the values
    of its MODEL_OPTIONS `options`."""
    def model_config(config, feature_dims):
        return {"model_name": model_name, "feature_dims": dict(feature_dims),
                **{option: getattr(config.model, option) for option in options},
                "classes": list(config.data.class_names)}
    return model_config


def no_guides(config, feature_dims):
    """For models trained without guiding networks."""
    return {}


def model_learning_rate(config):
    return {"model": config.optim.lr}
