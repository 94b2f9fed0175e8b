"""Synthetic LLP: the project's embedded default dataset (PROTOCOL.md §2 layout, planted truth).

The real LLP features cannot be downloaded everywhere, so this module writes a stand-in with
exactly the published layout under `root`:

    root/data/AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv, AVVP_dataset_full.csv
    root/data/AVVP_eval_audio.csv, AVVP_eval_visual.csv      (val + test videos)
    root/feats/vggish/<id>.npy (10, 128), feats/res152/<id>.npy (80, 2048),
    root/feats/r2plus1d_18/<id>.npy (10, 512)               (<id> = first 11 chars of filename)
    root/data/synthetic_truth.npz                             (planted truth of every split)

What is planted, per video: 1-3 events of distinct classes (Speech frequent, as in LLP). Each
event is audio-only, visual-only or audio-visual; it covers one or more runs of segments or the
whole video; the audio and visual extents of an audio-visual event sometimes differ. Each class
has a prototype per feature kind; pairs of related classes share half of theirs (confusable).
An active (class, segment) adds amplitude x (instance-varied) prototype to a background made of
a per-dimension offset, a low-rank per-video "scene" and white noise; frames get per-frame jitter.
The weak label of a video is the union of its audio and visual classes, so a labelled class is
often absent from one modality: the ambiguity that weakly-supervised parsing has to resolve.

With `modern_features=True` it also writes VALOR's layout of modern features (PROTOCOL.md §13),
from the same planted truth, scenes and per-segment amplitudes:

    root/CLIP/features/<id>.npy (10, 768)   one frame vector per segment, from the visual truth
    root/CLAP/features/<id>.npy (64, 768)   feature maps from the audio truth: 2 frequency bands
                                            x 32 time steps, each band spanning the whole 10 s

Everything is a function of `seed` (one SeedSequence per purpose, one per video), so the same
arguments give the same bytes; the modern features draw from purposes of their own, so a root
without them is byte for byte what it was before they existed. `root/.synthetic_complete` is
written last; an interrupted run leaves `root/.synthetic_partial` instead and is regenerated
from scratch next time.

`write_pseudo_labels` is a separate step, so that several noise levels can share one dataset: it
derives segment pseudo-labels from the planted truth at a chosen precision and recall and writes

    out_root/CLAP/segment_pseudo_labels/<id>.npy (10, 25)   audio, segment x class, 0 or 1
    out_root/CLIP/segment_pseudo_labels/<id>.npy (10, 25)   visual
    out_root/synthetic_pseudo_labels.json                   parameters, measured precision/recall
"""
import io
import json
import os
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    CLASS_INDEX,
    CLASSES,
    CLIP_FEATURE_SHAPE,
    EVAL_AUDIO_CSV,
    EVAL_COLUMNS,
    EVAL_VISUAL_CSV,
    FEATURE_KINDS,
    FRAMES_PER_SEGMENT,
    LABEL_FULL_CSV,
    LABEL_TEST_CSV,
    LABEL_TRAIN_CSV,
    LABEL_VAL_CSV,
    MODALITIES,
    NUM_CLASSES,
    NUM_SEGMENTS,
    PSEUDO_LABEL_SHAPE,
    VALOR_FEATURES_FOLDER,
    VALOR_PSEUDO_LABELS_FOLDER,
    VALOR_SET_MODALITY,
    VALOR_SETS,
    YOUTUBE_ID_LENGTH,
)
from utils.eval_metrics import event_rows
from utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

# (n_train, n_val, n_test). "demo" is sized so that the full DHHN pipeline runs in minutes on a
# 2-core CPU; "llp" has the real split sizes (about 8 GB of features).
SIZES = {"tiny": (48, 16, 16), "demo": (640, 128, 192), "llp": (10000, 649, 1200)}
SPLITS = ("train", "val", "test")
SPLIT_LABEL_CSV = {"train": LABEL_TRAIN_CSV, "val": LABEL_VAL_CSV, "test": LABEL_TEST_CSV}
EVAL_SPLITS = ("val", "test")  # the dense eval files cover these, as in LLP
FEATURE_DTYPES = ("float32", "float64")
TRUTH_FILE = "synthetic_truth.npz"
COMPLETE_MARKER = ".synthetic_complete"
PARTIAL_MARKER = ".synthetic_partial"
# Bump when the generated content changes, so that an old complete root is regenerated.
FORMAT_VERSION = 2
# The same for the CLIP/CLAP features; recorded only in the parameters of roots that have them.
MODERN_FORMAT_VERSION = 1
MODERN_SET_SHAPES = {"CLIP": CLIP_FEATURE_SHAPE, "CLAP": CLAP_FEATURE_SHAPE}
_SET_OF_MODALITY = {modality: name for name, modality in VALOR_SET_MODALITY.items()}
PSEUDO_LABELS_SIDECAR = "synthetic_pseudo_labels.json"
PSEUDO_LABELS_PARTIAL = ".synthetic_pseudo_labels_partial"
# where the false positives of write_pseudo_labels come from, in the order they are filled
FALSE_POSITIVE_SOURCES = ("weak_label", "confusable", "other")

# Pairs of related classes whose prototypes share half their energy (in every feature kind).
CONFUSABLE_PAIRS = (
    ("Violin_fiddle", "Cello"), ("Acoustic_guitar", "Banjo"), ("Baby_laughter", "Baby_cry_infant_cry"),
    ("Lawn_mower", "Chainsaw"), ("Car", "Motorcycle"), ("Vacuum_cleaner", "Blender"),
    ("Cheering", "Clapping"), ("Dog", "Cat"), ("Fire_alarm", "Telephone_bell_ringing"),
    ("Speech", "Singing"),
)

YOUTUBE_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
_CLIP_SECONDS = NUM_SEGMENTS  # one segment per second
# CLAP maps as VALOR saves them (utils/clap_preprocess.py, get_audio_feature_maps -> clap_utils.py,
# htsat_forward_features): HTS-AT's 8 x 8 token grid is (4 time chunks x 2 frequency bins) x 8 time
# steps; it is regrouped to 2 frequency bins x 32 time steps and flattened, so rows 0-31 hold one
# half of the mel bins and rows 32-63 the other, each over the whole 10 s in time order. VALOR's
# model views them as (2, 32) again and averages the two (PROTOCOL.md §13); with a layout in time
# order over all 64 rows it would mix the first and the second half of the clip.
_CLAP_BANDS = 2
_CLAP_STEPS = CLAP_FEATURE_SHAPE[0] // _CLAP_BANDS


@dataclass(frozen=True)
class Recipe:
    """Every knob of the planted content; the defaults are the dataset (FORMAT_VERSION)."""
    events_per_video_probs: tuple = (0.40, 0.50, 0.10)   # P(1), P(2), P(3) events
    speech_weight: float = 12.0             # class-draw weight of Speech; others ~ lognormal(0, .5)
    modality_probs: tuple = (0.33, 0.27, 0.40)          # audio-only, visual-only, audio-visual
    speech_modality_probs: tuple = (0.50, 0.10, 0.40)   # Speech is often off-screen
    whole_video_prob_audio: float = 0.30
    whole_video_prob_visual: float = 0.45
    runs_probs: tuple = (0.70, 0.25, 0.05)              # P(1), P(2), P(3) runs if not whole
    run_length_weights: tuple = (6, 5, 4, 3, 3, 2, 2, 1, 1)  # lengths 1..9
    av_same_extent_prob: float = 0.50
    av_jittered_extent_prob: float = 0.30               # else: independent visual extent
    shared_fraction: float = 0.5            # energy share of a confusable pair's common part
    instance_variation: float = 0.5         # per-video prototype perturbation (relative norm)
    # Amplitudes are in units of the white-noise std. They are high because the "demo" split
    # gives DHHN only ~100 optimizer steps (10 epochs of 640 videos at batch 64): the difficulty
    # is meant to lie in the weak labels (which modality, which segments), not in detection.
    amplitude: tuple = (("audio", 12.0), ("frames", 8.0), ("snippets", 12.0))
    amplitude_range: tuple = (0.6, 1.2)     # per-segment factor on the amplitude
    frame_jitter: float = 0.3               # per-frame relative amplitude jitter
    noise_std: float = 1.0
    offset_scale: float = 0.5               # per-dimension offset ~ |N(0, 1)| * scale
    scene_rank: int = 8
    scene_std: float = 0.8                  # per-coefficient std of the per-video scene
    scene_drift: float = 0.3                # per-segment drift of the scene coefficients


RECIPE = Recipe()


@dataclass(frozen=True)
class ModernRecipe:
    """The knobs of the CLIP/CLAP features (MODERN_FORMAT_VERSION); noise, scenes and prototype
    construction are those of Recipe."""
    # in units of the white-noise std; CLAP gets ~6 rows per segment in VALOR's pooling (3.2 time
    # steps x 2 bands), as frames get 8, hence the same amplitude as frames
    amplitude: tuple = (("CLIP", 12.0), ("CLAP", 8.0))
    row_jitter: float = 0.3                 # per-row relative amplitude jitter


MODERN_RECIPE = ModernRecipe()


@dataclass(frozen=True)
class PseudoLabelNoise:
    """Where write_pseudo_labels puts its false positives (the full rule is in its docstring)."""
    weak_label_share: float = 0.8    # share on weak-label classes absent from that modality/segment
    cross_modal_weight: float = 2.0  # extra weight where the class is present in the other modality
    boundary_weight: float = 1.0     # extra weight next to a segment where it is present


PSEUDO_LABEL_NOISE = PseudoLabelNoise()


# --------------------------------------------------------------------------------------------
# public API

def generate_synthetic_llp(root, n_train, n_val, n_test, seed=0, feature_dtype="float32",
                           progress=False, modern_features=False):
    """Write a synthetic LLP under `root` (layout in the module docstring); returns a summary dict.

    `modern_features` adds the CLIP (10, 768) and CLAP (64, 768) features of VALOR's layout. A
    no-op (summary with "skipped": True) when `root` already holds a complete dataset with the
    same parameters (or the same with modern features, when they are not asked for); a root
    without them is regenerated when they are. Refuses (FileExistsError) to write into a folder
    holding annotation, feature or pseudo-label files that this module did not write.
    """
    params = _params(n_train, n_val, n_test, seed, feature_dtype, modern_features)
    started = time.perf_counter()
    if is_complete(root, **_public(params)):
        with open(os.path.join(root, COMPLETE_MARKER)) as handle:
            summary = json.load(handle)["summary"]
        return {**summary, "root": str(root), "skipped": True, "seconds": 0.0}
    _claim_root(root, params)

    world = _build_world(seed, RECIPE)
    modern_world = _build_modern_world(seed, RECIPE) if modern_features else None
    split_sizes = {"train": n_train, "val": n_val, "test": n_test}
    filenames = _make_filenames(seed, split_sizes)
    truth = {split: _sample_annotations(seed, split, split_sizes[split], world["class_weights"], RECIPE)
             for split in SPLITS}

    data_dir, feat_dirs = _layout(root)
    modern_dirs = _valor_dirs(root, VALOR_FEATURES_FOLDER, create=modern_features)
    jobs = [(split, i) for split in SPLITS for i in range(split_sizes[split])]
    iterator = jobs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(jobs, desc="synthetic LLP features", unit="video")
    feature_bytes = modern_feature_bytes = 0
    for split, i in iterator:
        audio_mask, visual_mask = truth[split][0][i], truth[split][1][i]
        feats, latents = _synthesize_video(world, seed, split, i, audio_mask, visual_mask, RECIPE)
        video_id = filenames[split][i][:YOUTUBE_ID_LENGTH]
        feature_bytes += save_features(feats, feat_dirs, video_id, feature_dtype)
        if modern_features:
            modern = _synthesize_modern_video(modern_world, seed, split, i, latents, RECIPE, MODERN_RECIPE)
            modern_feature_bytes += save_features(modern, modern_dirs, video_id, feature_dtype)

    _write_truth(os.path.join(data_dir, TRUTH_FILE), filenames, truth)
    _write_annotation_csvs(data_dir, filenames, truth)
    summary = _summary(params, filenames, truth, feature_bytes, modern_feature_bytes)
    atomic_write_json({"params": params, "summary": summary}, os.path.join(root, COMPLETE_MARKER))
    os.remove(os.path.join(root, PARTIAL_MARKER))
    return {**summary, "root": str(root), "skipped": False,
            "seconds": round(time.perf_counter() - started, 2)}


def is_complete(root, n_train, n_val, n_test, seed=0, feature_dtype="float32", modern_features=False):
    """True when `root` holds a finished synthetic LLP generated with exactly these parameters,
    or with the same and modern features when `modern_features` is False (such a root holds
    everything a root without them holds, byte for byte)."""
    wanted = _params(n_train, n_val, n_test, seed, feature_dtype, modern_features)
    marker = os.path.join(root, COMPLETE_MARKER)
    if not os.path.isfile(marker) or os.path.exists(os.path.join(root, PARTIAL_MARKER)):
        return False
    try:
        with open(marker) as handle:
            stored = json.load(handle)["params"]
        if not modern_features:
            stored = {key: value for key, value in stored.items() if key not in _MODERN_KEYS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    if stored != wanted:
        return False
    data_dir, _ = _layout(root, create=False)
    needed = list(SPLIT_LABEL_CSV.values()) + [LABEL_FULL_CSV, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, TRUTH_FILE]
    return all(os.path.isfile(os.path.join(data_dir, name)) for name in needed)


def write_pseudo_labels(root, out_root, precision, recall, seed=0):
    """Noisy segment pseudo-labels of every video of a complete synthetic LLP at `root`, derived
    from its planted truth; returns what they measure, {"audio": {...}, "visual": {...}}, each with
    precision, recall (None when undefined), true_positives, false_positives, false_negatives and
    false_positives_by_source.

    Writes out_root/CLAP/segment_pseudo_labels/<id>.npy (audio) and out_root/CLIP/... (visual),
    (10, 25) float32 in {0, 1}, segment x class as VALOR's (PROTOCOL.md §13), and last the sidecar
    out_root/synthetic_pseudo_labels.json (parameters and measured numbers, also per split).

    The noise model, per modality and split, on the (video, segment, class) cells:
    - recall: each cell of the planted truth is kept with probability `recall`, independently;
    - precision: F = round_half_up(K * (1 - p) / p) false positives are added, K the cells kept,
      so that the split's precision is p up to rounding. They are drawn without replacement among
      the negative cells of three disjoint pools, filled in the order of FALSE_POSITIVE_SOURCES:
      "weak_label", classes of the video's weak label at segments where this modality lacks them
      (the labeller asked about a labelled class: it is seen but not heard, or heard a second
      later), PSEUDO_LABEL_NOISE.weak_label_share of F, drawn with weight 1 + cross_modal_weight
      where the class is present there in the other modality + boundary_weight where it is
      present in this modality at a neighbouring segment; "confusable", the CONFUSABLE_PAIRS
      partner of a class present at that segment (not a weak-label class), the rest of F,
      uniformly; what a pool cannot hold goes to the other one, and what neither can to "other",
      any remaining negative cell, uniformly. If no cell is left, precision comes out higher.
    precision = recall = 1 gives the truth exactly. The draws depend on (seed, modality, split)
    only, so at one seed the cells kept at a lower recall are a subset of those kept at a higher
    one, and the false positives of a higher precision (same recall) a subset of a lower one's.
    Refuses (FileExistsError) to write over pseudo-label files in `out_root` it did not write.
    """
    _check_pseudo_label_args(precision, recall, seed)
    dataset = _complete_params(root)
    run = {"precision": float(precision), "recall": float(recall), "seed": int(seed)}
    out_dirs = _valor_dirs(out_root, VALOR_PSEUDO_LABELS_FOLDER)
    _claim_pseudo_label_root(out_root, out_dirs, run)

    per_split = {}
    totals = {modality: Counter() for modality in MODALITIES}
    for split in SPLITS:
        filenames, audio, visual = load_planted_truth(root, split)
        # (N, 10, 25) segment x class, as the files; the planted truth is class x segment
        truths = dict(zip(MODALITIES, (np.ascontiguousarray(mask.transpose(0, 2, 1), dtype=bool)
                                       for mask in (audio, visual))))
        weak = truths["audio"].any(axis=1) | truths["visual"].any(axis=1)
        per_split[split] = {}
        for modality in MODALITIES:
            set_name = _SET_OF_MODALITY[modality]
            other = truths[MODALITIES[1 - MODALITIES.index(modality)]]
            labels, by_source = _noisy_segment_labels(
                truths[modality], other, weak, precision, recall,
                seeded_rng(seed, _PURPOSE_PSEUDO_LABELS, VALOR_SETS.index(set_name), SPLITS.index(split)))
            assert labels.shape[1:] == PSEUDO_LABEL_SHAPE, labels.shape
            for name, video_labels in zip(filenames, labels):
                np.save(os.path.join(out_dirs[set_name], name[:YOUTUBE_ID_LENGTH] + ".npy"),
                        video_labels.astype(np.float32))
            counts = _label_counts(labels, truths[modality], by_source)
            totals[modality].update(counts)
            per_split[split][modality] = _label_quality(counts)
    measured = {modality: _label_quality(totals[modality]) for modality in MODALITIES}

    atomic_write_json({**run, "root": str(root), "dataset": dataset, "noise": asdict(PSEUDO_LABEL_NOISE),
                       "measured": measured, "measured_per_split": per_split},
                      os.path.join(out_root, PSEUDO_LABELS_SIDECAR))
    os.remove(os.path.join(out_root, PSEUDO_LABELS_PARTIAL))
    return measured


def load_planted_truth(root, split):
    """(filenames list, audio (N, 25, 10) uint8, visual (N, 25, 10) uint8) planted for `split`.

    Rows follow the split's label CSV; arrays are class x segment, 1 where the event is present.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = os.path.join(root, "data", TRUTH_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no planted truth (not a synthetic LLP root?)")
    with np.load(path, allow_pickle=False) as truth:
        return ([str(name) for name in truth[f"{split}_filenames"]],
                truth[f"{split}_audio"].copy(), truth[f"{split}_visual"].copy())


# --------------------------------------------------------------------------------------------
# parameters, markers and the root folder

_MODERN_KEYS = ("modern_features", "modern_format_version")


def check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _params(n_train, n_val, n_test, seed, feature_dtype, modern_features=False):
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("seed", seed)):
        check_count(name, value)
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
    if not isinstance(modern_features, (bool, np.bool_)):
        raise ValueError(f"modern_features must be True or False, got {modern_features!r}")
    params = {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test), "seed": int(seed),
              "feature_dtype": feature_dtype, "format_version": FORMAT_VERSION}
    if modern_features:  # recorded only when asked: a root without them keeps its marker's bytes
        params.update(modern_features=True, modern_format_version=MODERN_FORMAT_VERSION)
    return params


def _public(params):
    """The arguments of is_complete among the parameters."""
    return {key: value for key, value in params.items()
            if key not in ("format_version", "modern_format_version")}


def _layout(root, create=True):
    data_dir = os.path.join(root, "data")
    feat_dirs = {kind: os.path.join(root, "feats", folder) for kind, (folder, _) in FEATURE_KINDS.items()}
    if create:
        for folder in [data_dir, *feat_dirs.values()]:
            os.makedirs(folder, exist_ok=True)
    return data_dir, feat_dirs


def _valor_dirs(root, folder, create=False):
    """{"CLIP": root/CLIP/<folder>, "CLAP": root/CLAP/<folder>} (VALOR's layout, PROTOCOL.md §13)."""
    dirs = {name: os.path.join(root, name, folder) for name in VALOR_SETS}
    if create:
        for path in dirs.values():
            os.makedirs(path, exist_ok=True)
    return dirs


def npy_files(folders):
    return [os.path.join(folder, name) for folder in folders if os.path.isdir(folder)
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")]


def _claim_root(root, params):
    """Mark `root` as being written; remove what an earlier generation left in it (pseudo-labels
    written into it included: they belong to the old truth)."""
    data_dir, feat_dirs = _layout(root, create=False)
    ours_names = set(SPLIT_LABEL_CSV.values()) | {LABEL_FULL_CSV, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, TRUTH_FILE}
    leftovers = [os.path.join(data_dir, name) for name in sorted(ours_names)
                 if os.path.exists(os.path.join(data_dir, name))]
    leftovers += npy_files([*feat_dirs.values(), *_valor_dirs(root, VALOR_FEATURES_FOLDER).values(),
                             *_valor_dirs(root, VALOR_PSEUDO_LABELS_FOLDER).values()])
    leftovers += [os.path.join(root, name) for name in (PSEUDO_LABELS_SIDECAR, PSEUDO_LABELS_PARTIAL)
                  if os.path.exists(os.path.join(root, name))]
    claim_output_folder(root, (PARTIAL_MARKER, COMPLETE_MARKER), leftovers, params,
                  "annotation, feature or pseudo-label files that the synthetic generator did not write",
                  "choose an empty folder")
    _layout(root)


def claim_output_folder(folder, markers, leftovers, params, foreign, advice):
    """Mark `folder` as being written (markers: (partial, complete) file names) after removing the
    `leftovers` an earlier run of ours left there (stale videos of another size or seed would
    otherwise linger); refuses (FileExistsError) when they are not ours: no marker of ours exists."""
    partial, complete = markers
    ours = any(os.path.exists(os.path.join(folder, marker)) for marker in markers)
    if leftovers and not ours:
        raise FileExistsError(f"{folder} already holds {foreign} (e.g. {leftovers[0]}); {advice}")
    os.makedirs(folder, exist_ok=True)
    atomic_write_json({"params": params}, os.path.join(folder, partial))
    if os.path.exists(os.path.join(folder, complete)):
        os.remove(os.path.join(folder, complete))
    for path in leftovers:
        os.remove(path)


# --------------------------------------------------------------------------------------------
# the planted world: prototypes, scenes, class frequencies

def seeded_rng(seed, *purpose):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=purpose))


# new purposes are appended: the streams of the existing ones must not change
(_PURPOSE_WORLD, _PURPOSE_NAMES, _PURPOSE_LABELS, _PURPOSE_FEATURES,
 _PURPOSE_MODERN_WORLD, _PURPOSE_MODERN_FEATURES, _PURPOSE_PSEUDO_LABELS) = range(7)


def unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def _build_world(seed, recipe):
    """Prototypes (25, D) per feature kind, scene bases (rank, D), offsets (D,), class weights."""
    rng = seeded_rng(seed, _PURPOSE_WORLD)
    world = {"class_weights": np.exp(0.5 * rng.standard_normal(NUM_CLASSES))}
    world["class_weights"][CLASS_INDEX["Speech"]] = recipe.speech_weight
    for kind, (_, shape) in FEATURE_KINDS.items():
        world[kind] = _kind_world(rng, shape[-1], recipe)
    return world


def _build_modern_world(seed, recipe):
    """The same as _build_world's per kind, for "CLIP" and "CLAP" (own stream, own prototypes)."""
    rng = seeded_rng(seed, _PURPOSE_MODERN_WORLD)
    return {name: _kind_world(rng, shape[-1], recipe) for name, shape in MODERN_SET_SHAPES.items()}


def _kind_world(rng, dim, recipe):
    """{"prototypes": (25, D), "scene": (rank, D), "offset": (D,)} of one feature kind."""
    pair_of = {CLASS_INDEX[name]: pair_index for pair_index, pair in enumerate(CONFUSABLE_PAIRS)
               for name in pair}
    own = unit_rows(rng.standard_normal((NUM_CLASSES, dim)))
    shared = unit_rows(rng.standard_normal((len(CONFUSABLE_PAIRS), dim)))
    prototypes = own.copy()
    for c, pair_index in pair_of.items():
        prototypes[c] = (np.sqrt(recipe.shared_fraction) * shared[pair_index]
                         + np.sqrt(1.0 - recipe.shared_fraction) * own[c])
    return {
        "prototypes": unit_rows(prototypes).astype(np.float32),
        "scene": unit_rows(rng.standard_normal((recipe.scene_rank, dim))).astype(np.float32),
        "offset": (recipe.offset_scale * np.abs(rng.standard_normal(dim))).astype(np.float32),
    }


def _partner_classes():
    """(25,) the CONFUSABLE_PAIRS partner of each class, -1 for none."""
    partner = np.full(NUM_CLASSES, -1)
    for first, second in CONFUSABLE_PAIRS:
        partner[CLASS_INDEX[first]], partner[CLASS_INDEX[second]] = CLASS_INDEX[second], CLASS_INDEX[first]
    return partner


def _make_filenames(seed, split_sizes):
    """{split: [<11-char id>_<start>_<end>]}, ids unique over all splits."""
    rng = seeded_rng(seed, _PURPOSE_NAMES)
    taken = set()
    names = {}
    for split in SPLITS:
        names[split] = []
        while len(names[split]) < split_sizes[split]:
            video_id = "".join(rng.choice(YOUTUBE_ID_ALPHABET, YOUTUBE_ID_LENGTH))
            start = int(rng.integers(0, 300))
            if video_id in taken:
                continue
            taken.add(video_id)
            names[split].append(f"{video_id}_{start}_{start + _CLIP_SECONDS}")
    return names


# --------------------------------------------------------------------------------------------
# annotations: which class is where, per modality

def _sample_extent(rng, whole_prob, recipe):
    """(10,) uint8 with one to three runs of segments, or all ones."""
    mask = np.zeros(NUM_SEGMENTS, dtype=np.uint8)
    if rng.random() < whole_prob:
        mask[:] = 1
        return mask
    lengths = np.arange(1, len(recipe.run_length_weights) + 1)
    length_probs = np.asarray(recipe.run_length_weights, dtype=float)
    length_probs /= length_probs.sum()
    n_runs = 1 + rng.choice(len(recipe.runs_probs), p=recipe.runs_probs)
    for _ in range(n_runs):
        length = int(rng.choice(lengths, p=length_probs))
        start = int(rng.integers(0, NUM_SEGMENTS - length + 1))
        mask[start:start + length] = 1
    return mask


def _visual_extent_of_av_event(rng, audio_extent, recipe):
    """Same as the audio extent, a shifted/widened copy of it, or an independent extent."""
    draw = rng.random()
    if draw < recipe.av_same_extent_prob:
        return audio_extent.copy()
    if draw < recipe.av_same_extent_prob + recipe.av_jittered_extent_prob:
        shift = int(rng.choice([-2, -1, 1, 2]))
        shifted = np.zeros_like(audio_extent)
        if shift > 0:
            shifted[shift:] = audio_extent[:-shift]
        else:
            shifted[:shift] = audio_extent[-shift:]
        if rng.random() < 0.5:
            shifted |= audio_extent  # widened rather than moved
        return shifted if shifted.any() else audio_extent.copy()
    return _sample_extent(rng, recipe.whole_video_prob_visual, recipe)


def _sample_annotations(seed, split, n_videos, class_weights, recipe):
    """audio, visual: (N, 25, 10) uint8 planted truth of one split."""
    rng = seeded_rng(seed, _PURPOSE_LABELS, SPLITS.index(split))
    class_probs = class_weights / class_weights.sum()
    audio = np.zeros((n_videos, NUM_CLASSES, NUM_SEGMENTS), dtype=np.uint8)
    visual = np.zeros_like(audio)
    speech = CLASS_INDEX["Speech"]
    for i in range(n_videos):
        n_events = 1 + rng.choice(len(recipe.events_per_video_probs), p=recipe.events_per_video_probs)
        classes = rng.choice(NUM_CLASSES, size=n_events, replace=False,
                             p=class_probs)
        for c in classes:
            probs = recipe.speech_modality_probs if c == speech else recipe.modality_probs
            modality = rng.choice(3, p=probs)  # 0 audio-only, 1 visual-only, 2 audio-visual
            if modality in (0, 2):
                audio[i, c] = _sample_extent(rng, recipe.whole_video_prob_audio, recipe)
            if modality == 1:
                visual[i, c] = _sample_extent(rng, recipe.whole_video_prob_visual, recipe)
            if modality == 2:
                visual[i, c] = _visual_extent_of_av_event(rng, audio[i, c], recipe)
    return audio, visual




# --------------------------------------------------------------------------------------------
# features

def instance_prototypes(rng, prototypes, classes, recipe):
    """(len(classes), D) per-video variants of the class prototypes."""
    base = prototypes[classes]
    dim = base.shape[-1]
    perturbation = rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(dim)
    return unit_rows(base + recipe.instance_variation * perturbation).astype(np.float32)


def segment_amplitudes(rng, masks, base_amplitude, recipe):
    """(10, K) amplitude of each of K classes in each segment (0 where the mask is 0)."""
    low, high = recipe.amplitude_range
    factors = rng.uniform(low, high, size=masks.shape).astype(np.float32)
    return (base_amplitude * factors * masks).T


def combine_rows(weights, rows):
    """(n, K) @ (K, D) as K rank-one updates in float32.

    Not `@`: BLAS sums in an order that depends on the library and its thread count (so would
    the bytes), and its threads only get in each other's way on products this small.
    """
    out = np.zeros((weights.shape[0], rows.shape[1]), dtype=np.float32)
    for k in range(rows.shape[0]):
        out += weights[:, k:k + 1].astype(np.float32) * rows[k]
    return out


def background_rows(rng, world_kind, scene_coefficients, n_rows, recipe):
    """(n_rows, D) offset + scene + white noise; scene_coefficients (n_rows, rank)."""
    dim = world_kind["offset"].shape[0]
    noise = rng.standard_normal((n_rows, dim), dtype=np.float32)
    noise *= recipe.noise_std
    noise += world_kind["offset"]
    noise += combine_rows(scene_coefficients, world_kind["scene"])
    return noise


def _synthesize_video(world, seed, split, index, audio_mask, visual_mask, recipe):
    """{"audio": (10, 128), "frames": (80, 2048), "snippets": (10, 512)} float32 for one video,
    and its latents (scene per segment, classes and per-segment amplitudes per modality)."""
    rng = seeded_rng(seed, _PURPOSE_FEATURES, SPLITS.index(split), index)
    amplitudes = dict(recipe.amplitude)
    scene = recipe.scene_std * rng.standard_normal(recipe.scene_rank, dtype=np.float32)
    scene_per_segment = scene + recipe.scene_drift * rng.standard_normal(
        (NUM_SEGMENTS, recipe.scene_rank), dtype=np.float32)

    audio_classes = np.flatnonzero(audio_mask.any(axis=1))
    visual_classes = np.flatnonzero(visual_mask.any(axis=1))
    audio_gain = segment_amplitudes(rng, audio_mask[audio_classes], 1.0, recipe)      # (10, Ka)
    visual_gain = segment_amplitudes(rng, visual_mask[visual_classes], 1.0, recipe)   # (10, Kv)

    feats = {}
    world_kind = world["audio"]
    audio = background_rows(rng, world_kind, scene_per_segment, NUM_SEGMENTS, recipe)
    shapes = instance_prototypes(rng, world_kind["prototypes"], audio_classes, recipe)
    audio += combine_rows(amplitudes["audio"] * audio_gain, shapes)
    feats["audio"] = audio

    world_kind = world["frames"]
    scene_per_frame = np.repeat(scene_per_segment, FRAMES_PER_SEGMENT, axis=0)
    frames = background_rows(rng, world_kind, scene_per_frame, NUM_SEGMENTS * FRAMES_PER_SEGMENT, recipe)
    shapes = instance_prototypes(rng, world_kind["prototypes"], visual_classes, recipe)
    frame_gain = np.repeat(visual_gain, FRAMES_PER_SEGMENT, axis=0)
    frame_gain = frame_gain * (1.0 + recipe.frame_jitter * rng.standard_normal(
        frame_gain.shape, dtype=np.float32))
    frames += combine_rows(amplitudes["frames"] * frame_gain, shapes)
    feats["frames"] = frames

    world_kind = world["snippets"]
    snippets = background_rows(rng, world_kind, scene_per_segment, NUM_SEGMENTS, recipe)
    shapes = instance_prototypes(rng, world_kind["prototypes"], visual_classes, recipe)
    snippets += combine_rows(amplitudes["snippets"] * visual_gain, shapes)
    feats["snippets"] = snippets

    for kind, (_, shape) in FEATURE_KINDS.items():
        assert feats[kind].shape == shape, (kind, feats[kind].shape)
    latents = {"scene": scene_per_segment, "audio_classes": audio_classes, "audio_gain": audio_gain,
               "visual_classes": visual_classes, "visual_gain": visual_gain}
    return feats, latents


def _clap_step_weights():
    """(32, 10) float32: the share of each CLAP time step (10/32 s) lying in each 1 s segment."""
    edges = np.linspace(0.0, _CLIP_SECONDS, _CLAP_STEPS + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    segment_starts = np.arange(NUM_SEGMENTS)[None, :] * (_CLIP_SECONDS / NUM_SEGMENTS)
    segment_ends = segment_starts + _CLIP_SECONDS / NUM_SEGMENTS
    overlap = np.clip(np.minimum(ends, segment_ends) - np.maximum(starts, segment_starts), 0.0, None)
    return (overlap / (ends - starts)).astype(np.float32)


def _clap_rows(per_segment):
    """(10, K) -> (64, K): per time step the overlap-weighted mix of the segments it covers, the
    same in both frequency bands (row = band * 32 + step, see _CLAP_BANDS)."""
    return np.tile(combine_rows(_clap_step_weights(), per_segment), (_CLAP_BANDS, 1))


def _jittered(rng, gain, jitter):
    return gain * (1.0 + jitter * rng.standard_normal(gain.shape, dtype=np.float32))


def _synthesize_modern_video(world, seed, split, index, latents, recipe, modern_recipe):
    """{"CLIP": (10, 768), "CLAP": (64, 768)} float32 for one video: the scene and per-segment
    amplitudes of its classic features (`latents`), the modern world's prototypes, own noise."""
    rng = seeded_rng(seed, _PURPOSE_MODERN_FEATURES, SPLITS.index(split), index)
    amplitudes = dict(modern_recipe.amplitude)
    feats = {}
    world_kind = world["CLIP"]
    clip = background_rows(rng, world_kind, latents["scene"], CLIP_FEATURE_SHAPE[0], recipe)
    shapes = instance_prototypes(rng, world_kind["prototypes"], latents["visual_classes"], recipe)
    gain = _jittered(rng, latents["visual_gain"], modern_recipe.row_jitter)
    clip += combine_rows(amplitudes["CLIP"] * gain, shapes)
    feats["CLIP"] = clip

    world_kind = world["CLAP"]
    clap = background_rows(rng, world_kind, _clap_rows(latents["scene"]), CLAP_FEATURE_SHAPE[0], recipe)
    shapes = instance_prototypes(rng, world_kind["prototypes"], latents["audio_classes"], recipe)
    gain = _jittered(rng, _clap_rows(latents["audio_gain"]), modern_recipe.row_jitter)
    clap += combine_rows(amplitudes["CLAP"] * gain, shapes)
    feats["CLAP"] = clap

    for name, shape in MODERN_SET_SHAPES.items():
        assert feats[name].shape == shape, (name, feats[name].shape)
    return feats


# --------------------------------------------------------------------------------------------
# pseudo-labels (write_pseudo_labels)

def _check_pseudo_label_args(precision, recall, seed):
    for name, value in (("precision", precision), ("recall", recall)):
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                or not np.isfinite(value)):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0 < precision <= 1:
        raise ValueError(f"precision must be in (0, 1], got {precision!r}")
    if not 0 <= recall <= 1:
        raise ValueError(f"recall must be in [0, 1], got {recall!r}")
    check_count("seed", seed)


def _complete_params(root):
    """The parameters of the complete synthetic LLP at `root`; ValueError when it is none."""
    try:
        with open(os.path.join(root, COMPLETE_MARKER)) as handle:
            params = json.load(handle)["params"]
        complete = is_complete(root, **_public(params))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        complete = False
    if not complete:
        raise ValueError(f"{root} is not a complete synthetic LLP of this version (no valid {COMPLETE_MARKER}); "
                         f"generate it first with scripts/make_synthetic_llp.py --out {root}")
    return params


def _claim_pseudo_label_root(out_root, out_dirs, run):
    """Mark `out_root` as being written; remove pseudo-labels an earlier call left there."""
    claim_output_folder(out_root, (PSEUDO_LABELS_PARTIAL, PSEUDO_LABELS_SIDECAR), npy_files(out_dirs.values()), run,
                  "pseudo-label files that write_pseudo_labels did not write", "choose another folder")
    for folder in out_dirs.values():
        os.makedirs(folder, exist_ok=True)


def _round_half_up(value):
    return int(np.floor(value + 0.5))


def _false_positive_pools(truth, other, weak, noise):
    """One (flat cell indices, sampling weights) per FALSE_POSITIVE_SOURCES: disjoint sets of the
    negative cells of `truth` (N, 10, 25); `other` the other modality's truth, `weak` (N, 25)."""
    negative = ~truth
    weak_label = negative & weak[:, None, :]
    neighbour = np.zeros_like(truth)
    neighbour[:, 1:] |= truth[:, :-1]
    neighbour[:, :-1] |= truth[:, 1:]
    weights = 1.0 + noise.cross_modal_weight * other + noise.boundary_weight * neighbour
    partner = _partner_classes()
    paired = np.flatnonzero(partner >= 0)
    partner_present = np.zeros_like(truth)
    partner_present[:, :, paired] = truth[:, :, partner[paired]]
    confusable = negative & ~weak_label & partner_present
    rest = negative & ~weak_label & ~confusable
    pools = []
    for mask, cell_weights in ((weak_label, weights), (confusable, None), (rest, None)):
        cells = np.flatnonzero(mask)
        pools.append((cells, np.ones(len(cells)) if cell_weights is None else cell_weights.reshape(-1)[cells]))
    return pools


def _allocate_false_positives(n_false, pool_sizes, weak_label_share):
    """How many false positives each pool gets (see write_pseudo_labels)."""
    weak_size, confusable_size, other_size = pool_sizes
    wanted_weak = min(weak_size, _round_half_up(weak_label_share * n_false))
    n_confusable = min(confusable_size, n_false - wanted_weak)
    n_weak = min(weak_size, n_false - n_confusable)
    return [n_weak, n_confusable, min(other_size, n_false - n_weak - n_confusable)]


def _noisy_segment_labels(truth, other, weak, precision, recall, rng, noise=PSEUDO_LABEL_NOISE):
    """(N, 10, 25) bool pseudo-labels of one modality and split, and {source: false positives}.

    Every draw has a size fixed by the truth (not by precision or recall): lower levels nest.
    """
    labels = truth & (rng.random(truth.shape) < recall)
    n_false = _round_half_up(labels.sum() * (1.0 - precision) / precision)
    pools = _false_positive_pools(truth, other, weak, noise)
    counts = _allocate_false_positives(n_false, [len(cells) for cells, _ in pools], noise.weak_label_share)
    flat = labels.reshape(-1).copy()
    for (cells, weights), count in zip(pools, counts):
        keys = rng.exponential(size=len(cells)) / weights  # weighted draw without replacement
        flat[cells[np.argsort(keys, kind="stable")[:count]]] = True
    return flat.reshape(truth.shape), dict(zip(FALSE_POSITIVE_SOURCES, counts))


def _label_counts(labels, truth, by_source):
    return Counter({"true_positives": int((labels & truth).sum()), "false_positives": int((labels & ~truth).sum()),
                    "false_negatives": int((truth & ~labels).sum()),
                    **{f"false_positives_{source}": count for source, count in by_source.items()}})


def _label_quality(counts):
    tp, fp, fn = counts["true_positives"], counts["false_positives"], counts["false_negatives"]
    return {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "false_positives_by_source": {source: counts[f"false_positives_{source}"]
                                          for source in FALSE_POSITIVE_SOURCES}}


# --------------------------------------------------------------------------------------------
# files

def save_features(feats, folders, video_id, feature_dtype):
    """Write {kind: array} to folders[kind]/<video_id>.npy; returns the bytes written."""
    written = 0
    for kind, array in feats.items():
        path = os.path.join(folders[kind], video_id + ".npy")
        np.save(path, array.astype(feature_dtype, copy=False))
        written += os.path.getsize(path)
    return written


def save_npz_deterministic(path, arrays):
    """np.savez without the zip timestamps, so that equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)),
                             member.getvalue())
    atomic_write_bytes(buffer.getvalue(), path)


def _write_truth(path, filenames, truth):
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_filenames"] = np.array(filenames[split], dtype=f"<U{_longest(filenames)}")
        arrays[f"{split}_audio"], arrays[f"{split}_visual"] = truth[split]
    save_npz_deterministic(path, arrays)


def _longest(filenames):
    return max([len(name) for names in filenames.values() for name in names], default=1)


def _weak_label_lines(names, audio, visual):
    present = (audio.any(axis=2) | visual.any(axis=2))
    return [f"{name}\t{','.join(CLASSES[c] for c in np.flatnonzero(row))}"
            for name, row in zip(names, present)]


def _write_annotation_csvs(data_dir, filenames, truth):
    weak_header = "filename\tevent_labels"
    weak = {split: _weak_label_lines(filenames[split], *truth[split]) for split in SPLITS}
    for split in SPLITS:
        write_tsv_lines(os.path.join(data_dir, SPLIT_LABEL_CSV[split]), weak_header, weak[split])
    # as in LLP: the full file is train, val, test in that order
    write_tsv_lines(os.path.join(data_dir, LABEL_FULL_CSV), weak_header,
                 [line for split in SPLITS for line in weak[split]])
    for file_name, modality in ((EVAL_AUDIO_CSV, 0), (EVAL_VISUAL_CSV, 1)):
        lines = ["\t".join(map(str, row)) for split in EVAL_SPLITS
                 for row in event_rows(filenames[split], truth[split][modality], CLASSES)]
        write_tsv_lines(os.path.join(data_dir, file_name), "\t".join(EVAL_COLUMNS), lines)


def write_tsv_lines(path, header, lines):
    atomic_write_text("\n".join([header, *lines]) + "\n", path)


def _summary(params, filenames, truth, feature_bytes, modern_feature_bytes):
    kinds = np.zeros(3, dtype=np.int64)  # audio-only, visual-only, audio-visual events
    for audio, visual in truth.values():
        has_audio, has_visual = audio.any(axis=2), visual.any(axis=2)
        kinds += [int((has_audio & ~has_visual).sum()), int((~has_audio & has_visual).sum()),
                  int((has_audio & has_visual).sum())]
    total = max(int(kinds.sum()), 1)
    summary = {**_public(params), "format_version": FORMAT_VERSION,
               "videos": {split: len(filenames[split]) for split in SPLITS},
               "events": int(kinds.sum()),
               "event_modality_fractions": {"audio_only": round(float(kinds[0]) / total, 3),
                                            "visual_only": round(float(kinds[1]) / total, 3),
                                            "audio_visual": round(float(kinds[2]) / total, 3)},
               "feature_bytes": int(feature_bytes),
               "recipe": asdict(RECIPE)}
    if params.get("modern_features"):  # appended, so that the summary of a default root is unchanged
        summary.update(modern_format_version=MODERN_FORMAT_VERSION,
                       modern_feature_bytes=int(modern_feature_bytes), modern_recipe=asdict(MODERN_RECIPE))
    return summary
