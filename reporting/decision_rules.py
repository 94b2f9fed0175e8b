"""Decision rules of other AVVP papers: binary segment predictions from exported probabilities
(PROTOCOL.md §14), to be scored with the project's evaluator (PROTOCOL.md §9).

Every rule has the shape of PROTOCOL.md §9: segment t of class c in video n is positive for
modality m when

    frame_prob[n, t, m, c] >= segment_threshold   AND   gate_m[n, c] >= gate threshold of m (and c)

and the rules differ in the two thresholds and in which video-level probability gates (`RULES`).
Every value is compared raw, as the releases compare it at test (none clamps there): HAN's
global_prob can exceed 1 (`OUTPUT_RANGES`) and then passes any gate. Probabilities are compared
as float64 (exported float32 values widen exactly). `dhhn` is the
project's protocol and equals `utils.eval_metrics.segment_predictions(outputs, "modality")`; `han`
equals `segment_predictions(outputs, "global")`. `cmpae` gates visual events with one threshold
per class, tuned on val by `tune_visual_thresholds`.
"""
import dataclasses
import zipfile

import numpy as np

from avvp_data.llp import NUM_CLASSES, NUM_SEGMENTS
from reporting.export import load_predictions
from utils.errors import UserError
from utils.eval_metrics import DECISION_THRESHOLD, evaluate_split

DEFAULT_RULE = "dhhn"   # the DHHN protocol (PROTOCOL.md §9)
TUNING_SPLIT = "val"    # thresholds are tuned on val only (PROTOCOL.md §14)
# the candidates of the CMPAE release's select_thresholds mode: 0.25, 0.30, ..., 0.70
CMPAE_VISUAL_GRID = tuple(round(0.25 + 0.05 * step, 2) for step in range(10))
# scores closer than this are ties (float rounding of a mean over videos), won by the larger threshold
TIE_TOLERANCE = 1e-12
PROBABILITY_SHAPES = {"audio_prob": ("N", NUM_CLASSES), "visual_prob": ("N", NUM_CLASSES),
                      "global_prob": ("N", NUM_CLASSES), "frame_prob": ("N", NUM_SEGMENTS, 2, NUM_CLASSES)}
# What the parsing models really output (nets/mmil_head.py, PROTOCOL.md §5): frame_prob is a
# sigmoid; audio_prob / visual_prob are sums over time of softmax-over-time weights times it, so
# at most 1; global_prob sums over both modalities with time weights that sum to 1 per modality and
# modality weights that sum to 1 per segment, so its weights can total up to 2 (attention on
# different segments per modality). HAN's release clamps it only inside its loss (PROTOCOL.md §7);
# trained models do exceed 1.
OUTPUT_RANGES = {"audio_prob": (0.0, 1.0), "visual_prob": (0.0, 1.0), "global_prob": (0.0, 2.0),
                 "frame_prob": (0.0, 1.0)}
# float32 sums of softmax weights land a few ulps past their bound (1.0000001 seen); far below
# the distance of any threshold to a bound
RANGE_TOLERANCE = 1e-5


class DecisionRuleError(UserError):
    """Probabilities a rule cannot use, or thresholds asked of the wrong data; names the file or split."""


@dataclasses.dataclass(frozen=True)
class DecisionRule:
    """One paper family's way from probabilities to segment decisions (PROTOCOL.md §14).

    audio_gate / visual_gate: the output key, (N, 25), that gates each modality. visual_grid: None
    for a fixed visual gate threshold; else the candidates of a per-class visual threshold tuned on
    val, visual_gate_threshold then being the value every other class keeps while one is tuned.
    """
    name: str
    papers: str
    segment_threshold: float
    audio_gate: str
    audio_gate_threshold: float
    visual_gate: str
    visual_gate_threshold: float
    visual_grid: tuple | None = None

    @property
    def tunes_thresholds(self):
        return self.visual_grid is not None

    @property
    def is_protocol(self):
        return self.name == DEFAULT_RULE

    def gate_description(self):
        """e.g. "segments >= 0.25; audio_prob >= 0.45; visual_prob >= per-class thresholds tuned on val"."""
        visual = (f"{self.visual_gate} >= per-class thresholds tuned on val" if self.tunes_thresholds
                  else f"{self.visual_gate} >= {self.visual_gate_threshold:g}")
        if self.audio_gate == self.visual_gate and not self.tunes_thresholds \
                and self.audio_gate_threshold == self.visual_gate_threshold:
            gates = f"{self.audio_gate} >= {self.audio_gate_threshold:g} gates both modalities"
        else:
            gates = f"{self.audio_gate} >= {self.audio_gate_threshold:g} gates audio, {visual} gates visual"
        return f"segments >= {self.segment_threshold:g}; {gates}"


# As each release decides at test (PROTOCOL.md §14, which names the files read).
RULES = {rule.name: rule for rule in (
    DecisionRule("dhhn", "MA, JoMoLD, LSLD, DHHN", DECISION_THRESHOLD, "audio_prob", DECISION_THRESHOLD,
                 "visual_prob", DECISION_THRESHOLD),
    DecisionRule("han", "HAN, VALOR", DECISION_THRESHOLD, "global_prob", DECISION_THRESHOLD,
                 "global_prob", DECISION_THRESHOLD),
    DecisionRule("cmpae", "CMPAE", 0.25, "audio_prob", 0.45, "visual_prob", 0.45, visual_grid=CMPAE_VISUAL_GRID),
    DecisionRule("coleaf", "CoLeaF", 0.25, "audio_prob", 0.52, "visual_prob", 0.52),
)}


def get_rule(rule):
    """A DecisionRule from itself or its name; ValueError on an unknown name."""
    if isinstance(rule, DecisionRule):
        return rule
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; known: {', '.join(RULES)}")
    return RULES[rule]


def visual_gate_thresholds(rule, visual_thresholds=None):
    """(25,) float64 visual gate thresholds of a rule: its fixed one for every class, or the given
    per-class ones for a rule that tunes them (DecisionRuleError when those are missing or not (25,))."""
    rule = get_rule(rule)
    if not rule.tunes_thresholds:
        if visual_thresholds is not None:
            raise ValueError(f"rule {rule.name} has a fixed visual gate; it takes no per-class thresholds")
        return np.full(NUM_CLASSES, rule.visual_gate_threshold)
    if visual_thresholds is None:
        raise DecisionRuleError(f"rule {rule.name} gates visual events with per-class thresholds tuned on val; "
                                "tune them first (tune_visual_thresholds)")
    thresholds = np.asarray(visual_thresholds, dtype=np.float64)
    if thresholds.shape != (NUM_CLASSES,):
        raise DecisionRuleError(f"rule {rule.name}: {NUM_CLASSES} visual thresholds needed, "
                                f"got shape {thresholds.shape}")
    return thresholds


def rule_predictions(outputs, rule, visual_thresholds=None):
    """(pred_audio, pred_visual), (N, 25, 10) bool class x segment, of exported outputs under a rule.

    outputs: "frame_prob" (N, 10, 2, 25) and the rule's gates (N, 25), numpy (as `load_outputs`
    returns them). visual_thresholds: (25,) for a rule that tunes them (cmpae), else None.
    """
    rule = get_rule(rule)
    visual_thresholds = visual_gate_thresholds(rule, visual_thresholds)
    segment_on = np.asarray(outputs["frame_prob"], dtype=np.float64) >= rule.segment_threshold   # (N, 10, 2, 25)
    gate_audio = np.asarray(outputs[rule.audio_gate], dtype=np.float64) >= rule.audio_gate_threshold   # (N, 25)
    gate_visual = np.asarray(outputs[rule.visual_gate], dtype=np.float64) >= visual_thresholds
    pred_audio = segment_on[:, :, 0, :] & gate_audio[:, None, :]   # (N, 10, 25)
    pred_visual = segment_on[:, :, 1, :] & gate_visual[:, None, :]
    return pred_audio.transpose(0, 2, 1), pred_visual.transpose(0, 2, 1)


def score_rule(outputs, gt_audio, gt_visual, rule, visual_thresholds=None):
    """`evaluate_split` (PROTOCOL.md §9) of `rule_predictions` against (N, 25, 10) truth."""
    return evaluate_split(*rule_predictions(outputs, rule, visual_thresholds), gt_audio, gt_visual)


def tune_visual_thresholds(outputs, gt_audio, gt_visual, split, rule="cmpae"):
    """(25,) float64 per-class visual gate thresholds of a tuning rule, chosen on val outputs and
    truth as the CMPAE release's select_thresholds mode chooses them (PROTOCOL.md §14).

    Objective: the split's event-level visual F, i.e. the "Eve. Visual" table cell
    (`evaluate_split(...)["evt_visual"]`: per-video mean F over classes, averaged over the val
    videos, PROTOCOL.md §9). Each class c is tuned on its own: its threshold takes every value of
    `rule.visual_grid` (0.25, 0.30, ..., 0.70) while all other classes keep
    `rule.visual_gate_threshold` (0.45), never the values found for other classes; the value with
    the highest objective is kept, ties (within TIE_TOLERANCE) going to the larger threshold, as the
    release's `>=` over its ascending grid does. Audio predictions (fixed by the rule) do not enter
    the objective.
    A class without val positives (no visual truth segment in any val video) can only gain false
    positives from its gate, so the objective never falls as its threshold rises: it gets the
    largest grid value, 0.70. The same holds for a class whose val visual predictions are empty at
    every candidate (all candidates tie).
    split: the name of the outputs' split; anything but "val" raises DecisionRuleError (thresholds
    chosen on test would select the reported numbers on test).
    """
    rule = get_rule(rule)
    if not rule.tunes_thresholds:
        raise ValueError(f"rule {rule.name} has fixed thresholds; nothing to tune")
    if split != TUNING_SPLIT:
        raise DecisionRuleError(f"thresholds of rule {rule.name} are tuned on a {TUNING_SPLIT} export only, "
                                f"not on {split!r} (PROTOCOL.md §14)")
    default = np.full(NUM_CLASSES, rule.visual_gate_threshold)
    pred_audio, pred_visual = rule_predictions(outputs, rule, default)
    # (N, 10, 25)
    visual_on = np.asarray(outputs["frame_prob"], dtype=np.float64)[:, :, 1, :] >= rule.segment_threshold
    visual_gate = np.asarray(outputs[rule.visual_gate], dtype=np.float64)   # (N, 25)
    tuned = default.copy()
    for cls in range(NUM_CLASSES):
        best_score = -np.inf
        candidate_pred = pred_visual.copy()
        for threshold in rule.visual_grid:
            candidate_pred[:, cls, :] = visual_on[:, :, cls] & (visual_gate[:, cls, None] >= threshold)
            score = evaluate_split(pred_audio, candidate_pred, gt_audio, gt_visual)["evt_visual"]
            if score >= best_score - TIE_TOLERANCE:
                best_score, tuned[cls] = max(score, best_score), threshold
    return tuned


def load_outputs(npz_path):
    """The probabilities of an exported row (reporting.export, `--export_dir`) for the rules: a dict with
    filenames (list of str), row and split (str), audio_prob / visual_prob / global_prob (N, 25) and
    frame_prob (N, 10, 2, 25) float arrays. Raises DecisionRuleError naming `npz_path` when the file
    is missing or unreadable, lacks an array, or has a wrong shape or a value outside what the models
    output (`OUTPUT_RANGES`, up to RANGE_TOLERANCE past a bound; NaN never). Values are kept raw."""
    try:
        loaded = load_predictions(npz_path)
    except FileNotFoundError:
        raise DecisionRuleError(f"{npz_path}: no such file") from None
    except KeyError as error:   # load_predictions reads "filenames" first
        raise DecisionRuleError(f"{npz_path}: lacks {error.args[0]} "
                                "(an export of main_DHHN.py --export_dir has it)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:   # truncated or not an .npz
        raise DecisionRuleError(f"{npz_path}: not a readable .npz ({error})") from None
    missing = [key for key in (*PROBABILITY_SHAPES, "split") if key not in loaded]
    if missing:
        raise DecisionRuleError(f"{npz_path}: lacks {', '.join(missing)} "
                                "(an export of main_DHHN.py --export_dir has them)")
    num_videos = len(loaded["filenames"])
    if num_videos == 0:
        raise DecisionRuleError(f"{npz_path}: no videos")
    for key, shape in PROBABILITY_SHAPES.items():
        expected = tuple(num_videos if size == "N" else size for size in shape)
        values = loaded[key]
        if values.shape != expected:
            raise DecisionRuleError(f"{npz_path}: {key} has shape {values.shape}, expected {expected} "
                                    f"for its {num_videos} videos")
        if not np.issubdtype(values.dtype, np.floating):
            raise DecisionRuleError(f"{npz_path}: {key} has dtype {values.dtype}, expected floats")
        low, high = OUTPUT_RANGES[key]
        outside = ~((values >= low - RANGE_TOLERANCE) & (values <= high + RANGE_TOLERANCE))   # NaN is outside
        if np.any(outside):
            raise DecisionRuleError(f"{npz_path}: {key} must hold values in [{low:g}, {high:g}] (what the models "
                                    f"output, nets/mmil_head.py); found {float(values[outside][0]):g}")
    return {key: loaded[key] for key in (*PROBABILITY_SHAPES, "filenames", "split")} | {"row": loaded.get("row", "")}
