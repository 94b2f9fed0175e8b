"""Synthetic LFAV: a stand-in for the long-form LFAV release (avvp_data/lfav.py), planted truth.

The real LFAV features are behind Google/Baidu Drive links, so this module writes a dataset of the
release's layout under `root`, which the readers of avvp_data/lfav.py read unchanged. The release is
GeWu-Lab/LFAV at `LFAV_RELEASE_COMMIT`; "dataloader.py:69" means src/dataloader.py line 69 there.

    root/LFAV_dataset/train/train_weakly.csv, train_audio_weakly.csv, train_visual_weakly.csv
    root/LFAV_dataset/val/val_weak_av.csv, val_audio_weakly.csv, val_visual_weakly.csv,
                          val_audio.csv, val_visual.csv            (test/ likewise, test_*)
    root/feats/audio-feat-vggish-align/<id>.npy     (T, 128) float32, VGGish
    root/feats/visual-feat-res18-align/<id>.npy     (T, 512) float32, ResNet18
    root/feats/visual-feat-r2plus1d-align/<id>.npy  (T, 512) float32, R(2+1)D-18
    root/synthetic_lfav_truth.npz                   planted events of every split

Label files: the release's own folder and names (lfav.py's WEAK_LABEL_FILES and TRUTH_FILES), tab-
separated with a header; a weak row names its classes comma-joined in LFAV_CLASSES order, 'silent'
when the modality has none (dataloader.py:28); a truth row `filename onset offset event_labels`
covers snippets onset..offset INCLUSIVE (evaluation.py:156, 172) in integer seconds. Features: one
.npy per video and kind, named `<id>.npy`, id = the filename (11 characters, as LFAV's YouTube ids;
dataloader.py:69-72), all three with T rows, T the video's length in 1-s snippets. The release
takes the feature folders from flags (main.py:33-38); their names here are those of its scripts
(src/scripts/train_s3.sh:4-6, whose parent folder `data_path/` is a placeholder).

What is planted, per video: a length T uniform in [min_length, max_length]; 1-8 classes (3 most
often, as in LFAV's val set; speech drawn most often); each class audio-only, visual-only or
audio-visual; per modality one to six runs of 2-60 snippets (log-uniform) or the whole video; the
visual runs of an audio-visual class are the audio runs, a jittered copy of them, or independent.
The first 35 videos of val and test each also have one class audio-visual (video i class i), so that
every class has positive snippets in audio, visual and both there, as in the release's val and test
(the snippet mAP of a class without any is NaN).
Runs of one class and modality that touch or overlap merge, so every truth row is a maximal run:
reading the files back gives exactly the planted rows (quartiles of their lengths about 4, 13 and
33 s; LFAV's val truth has 4, 8 and 31). Features are made as synthetic_llp's, with its helpers:
per kind, a class prototype (confusable pairs share half of it) times a per-snippet amplitude on a
background of offset, low-rank drifting scene and white noise; audio from the audio truth, frames
and snippets from the visual truth.

Everything is a function of the parameters (one SeedSequence per purpose and video), so the same
arguments give the same bytes. `root/.synthetic_lfav_complete` is written last; an interrupted run
leaves `root/.synthetic_lfav_partial` instead and is regenerated from scratch next time.
"""
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from avvp_data.lfav import (
    FEATURE_KINDS,
    LABEL_FOLDER,
    LFAV_CLASS_INDEX,
    LFAV_CLASSES,
    LFAV_NUM_CLASSES,
    LFAV_RELEASE_COMMIT,
    MODALITIES,
    SILENT_LABEL,
    TRUTH_COLUMNS,
    TRUTH_FILES,
    VIDEO_ID_LENGTH,
    WEAK_COLUMNS,
    WEAK_LABEL_FILES,
    feature_dirs,
    label_paths,
)
from avvp_data.synthetic_llp import (
    YOUTUBE_ID_ALPHABET,
    background_rows,
    check_count,
    claim_output_folder,
    combine_rows,
    instance_prototypes,
    npy_files,
    save_features,
    save_npz_deterministic,
    seeded_rng,
    segment_amplitudes,
    unit_rows,
    write_tsv_lines,
)
from utils.io import atomic_write_json

# (n_train, n_val, n_test); "lfav" has the release's split sizes (about 4.3 GB of features at the
# default lengths, 180 s on average). val and test hold at least 35 videos, one per class (see
# _sample_video), so that every class has positive snippets there; "demo" is what DHHN_lfav.sh
# trains on a laptop (with --max_length 120: about 5 min per run on 2 CPU cores)
SIZES = {"tiny": (48, 35, 35), "demo": (96, 35, 35), "lfav": (3721, 486, 968)}
SPLITS = ("train", "val", "test")
DEFAULT_MIN_LENGTH, DEFAULT_MAX_LENGTH = 60, 300   # snippets (seconds) per video, uniform
FEATURE_DTYPE = "float32"
TRUTH_FILE = "synthetic_lfav_truth.npz"
COMPLETE_MARKER = ".synthetic_lfav_complete"
PARTIAL_MARKER = ".synthetic_lfav_partial"
# Bump when the generated content changes, so that an old complete root is regenerated.
FORMAT_VERSION = 2
# columns of a planted event (rows of `<split>_events` in TRUTH_FILE); modality 0 audio, 1 visual
EVENT_COLUMNS = ("video", "modality", "class", "onset", "offset")

# Pairs of related classes whose prototypes share half their energy (in every feature kind).
CONFUSABLE_PAIRS = (
    ("violin", "cello"), ("guitar", "banjo"), ("cheering", "clapping"), ("dog", "cat"),
    ("speech", "singing"), ("alarm", "car_alarm"), ("helicopter", "fixed-wing_aircraft"),
    ("playing_tennis", "playing_badminton"), ("playing_basketball", "playing_volleyball"),
    ("cry", "laughter"),
)


@dataclass(frozen=True)
class Recipe:
    """Every knob of the planted content; the defaults are the dataset (FORMAT_VERSION). The names
    shared with synthetic_llp.Recipe are read by its feature helpers."""
    classes_per_video_probs: tuple = (0.10, 0.22, 0.26, 0.16, 0.14, 0.07, 0.03, 0.02)   # P(1) .. P(8)
    speech_weight: float = 10.0             # class-draw weight of speech; others ~ lognormal(0, .5)
    modality_probs: tuple = (0.30, 0.25, 0.45)          # audio-only, visual-only, audio-visual
    speech_modality_probs: tuple = (0.55, 0.05, 0.40)   # speech is often off-screen
    whole_video_prob_audio: float = 0.08
    whole_video_prob_visual: float = 0.12
    runs_probs: tuple = (0.45, 0.22, 0.14, 0.09, 0.06, 0.04)   # P(1) .. P(6) runs if not whole
    run_length_range: tuple = (2, 60)       # run lengths are log-uniform in this range (seconds)
    av_same_extent_prob: float = 0.50
    av_jittered_extent_prob: float = 0.30   # else: independent visual extent
    av_max_jitter: int = 3                  # seconds an onset or offset of a jittered copy moves
    shared_fraction: float = 0.5            # energy share of a confusable pair's common part
    instance_variation: float = 0.5         # per-video prototype perturbation (relative norm)
    # in units of the white-noise std, as synthetic_llp's; frames (one per snippet here) lower
    amplitude: tuple = (("audio", 10.0), ("frames", 8.0), ("snippets", 10.0))
    amplitude_range: tuple = (0.6, 1.2)     # per-snippet factor on the amplitude
    frame_jitter: float = 0.3               # extra per-snippet relative jitter of the frame amplitude
    noise_std: float = 1.0
    offset_scale: float = 0.5               # per-dimension offset ~ |N(0, 1)| * scale
    scene_rank: int = 8
    scene_std: float = 0.8                  # per-coefficient std of the per-video scene
    scene_drift: float = 0.3                # per-snippet drift of the scene coefficients


RECIPE = Recipe()


# --------------------------------------------------------------------------------------------
# public API

def generate_synthetic_lfav(root, n_train, n_val, n_test, min_length=DEFAULT_MIN_LENGTH,
                            max_length=DEFAULT_MAX_LENGTH, seed=0, progress=False):
    """Write a synthetic LFAV under `root` (layout in the module docstring); returns a summary dict.

    A no-op (summary with "skipped": True) when `root` already holds a complete dataset with the
    same parameters. Refuses (FileExistsError) to write into a folder holding label, feature or
    truth files that this module did not write.
    """
    params = _params(n_train, n_val, n_test, min_length, max_length, seed)
    started = time.perf_counter()
    if is_complete(root, **_public(params)):
        with open(os.path.join(root, COMPLETE_MARKER)) as handle:
            summary = json.load(handle)["summary"]
        return {**summary, "root": str(root), "skipped": True, "seconds": 0.0}
    _claim_root(root, params)

    world = _build_world(seed, RECIPE)
    split_sizes = {"train": n_train, "val": n_val, "test": n_test}
    filenames = _make_filenames(seed, split_sizes)
    feat_dirs = feature_dirs(root)
    jobs = [(split, i) for split in SPLITS for i in range(split_sizes[split])]
    iterator = jobs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(jobs, desc="synthetic LFAV features", unit="video")
    lengths = {split: [] for split in SPLITS}
    events = {split: [] for split in SPLITS}
    feature_bytes = 0
    for split, i in iterator:
        # the first 35 videos of val and test cover every class, one each (see _sample_video)
        covered = i if split != "train" and i < LFAV_NUM_CLASSES else None
        audio_mask, visual_mask = _sample_video(seeded_rng(seed, *_LABELS, SPLITS.index(split), i),
                                                world["class_probs"], min_length, max_length, RECIPE, covered)
        feats = _synthesize_video(world, seeded_rng(seed, *_FEATURES, SPLITS.index(split), i),
                                  audio_mask, visual_mask, RECIPE)
        feature_bytes += save_features(feats, feat_dirs, filenames[split][i], FEATURE_DTYPE)
        lengths[split].append(audio_mask.shape[1])
        events[split] += [(i, m, c, onset, offset) for m, mask in enumerate((audio_mask, visual_mask))
                          for c, onset, offset in _event_rows(mask)]
    events = {split: np.array(rows, dtype=np.int32).reshape(-1, len(EVENT_COLUMNS)) for split, rows in events.items()}
    lengths = {split: np.array(counts, dtype=np.int32) for split, counts in lengths.items()}

    _write_truth(os.path.join(root, TRUTH_FILE), filenames, lengths, events)
    _write_label_files(os.path.join(root, LABEL_FOLDER), filenames, events)
    summary = _summary(params, filenames, lengths, events, feature_bytes)
    atomic_write_json({"params": params, "summary": summary}, os.path.join(root, COMPLETE_MARKER))
    os.remove(os.path.join(root, PARTIAL_MARKER))
    return {**summary, "root": str(root), "skipped": False,
            "seconds": round(time.perf_counter() - started, 2)}


def is_complete(root, n_train, n_val, n_test, min_length=DEFAULT_MIN_LENGTH, max_length=DEFAULT_MAX_LENGTH,
                seed=0):
    """True when `root` holds a finished synthetic LFAV generated with exactly these parameters."""
    wanted = _params(n_train, n_val, n_test, min_length, max_length, seed)
    marker = os.path.join(root, COMPLETE_MARKER)
    if not os.path.isfile(marker) or os.path.exists(os.path.join(root, PARTIAL_MARKER)):
        return False
    try:
        with open(marker) as handle:
            stored = json.load(handle)["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return stored == wanted and all(os.path.isfile(path) for path in _our_files(root))


def load_planted_truth(root, split):
    """(filenames list, lengths (N,) int32, events (E, 5) int32) planted for `split`.

    Rows of `events` are EVENT_COLUMNS: video index into `filenames`, modality (0 audio, 1 visual),
    class index, onset, offset (inclusive, seconds); they are the maximal runs of the truth, sorted
    by video, modality, class, onset: exactly the rows of the truth files.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = os.path.join(root, TRUTH_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no planted truth (not a synthetic LFAV root?)")
    with np.load(path, allow_pickle=False) as truth:
        return ([str(name) for name in truth[f"{split}_filenames"]], truth[f"{split}_lengths"].copy(),
                truth[f"{split}_events"].copy())


def event_masks(lengths, events):
    """{modality: [(35, T) uint8 per video]} of planted `events` (load_planted_truth's arrays)."""
    masks = {modality: [np.zeros((LFAV_NUM_CLASSES, int(t)), dtype=np.uint8) for t in lengths]
             for modality in MODALITIES}
    for video, modality, cls, onset, offset in events:
        masks[MODALITIES[modality]][video][cls, onset:offset + 1] = 1   # inclusive offset
    return masks


# --------------------------------------------------------------------------------------------
# parameters, markers and the root folder

def _params(n_train, n_val, n_test, min_length, max_length, seed):
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("seed", seed),
                        ("min_length", min_length), ("max_length", max_length)):
        check_count(name, value)
    if min_length < 1 or max_length < min_length:
        raise ValueError(f"lengths must satisfy 1 <= min_length <= max_length, got {min_length}, {max_length}")
    return {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test), "min_length": int(min_length),
            "max_length": int(max_length), "seed": int(seed), "format_version": FORMAT_VERSION,
            "release_commit": LFAV_RELEASE_COMMIT}


def _public(params):
    """The arguments of is_complete among the parameters."""
    return {key: value for key, value in params.items() if key not in ("format_version", "release_commit")}


def _our_files(root):
    """The label files and the truth file a complete root has."""
    return [os.path.join(root, TRUTH_FILE)] + [path for files in label_paths(root).values() for path in files.values()]


def _claim_root(root, params):
    """Mark `root` as being written; remove what an earlier generation left in it."""
    leftovers = [path for path in _our_files(root) if os.path.exists(path)]
    leftovers += npy_files(feature_dirs(root).values())
    claim_output_folder(root, (PARTIAL_MARKER, COMPLETE_MARKER), leftovers, params,
                  "label, feature or truth files that the synthetic LFAV generator did not write",
                  "choose an empty folder")
    for folder in [*feature_dirs(root).values(), *(os.path.join(root, LABEL_FOLDER, split) for split in SPLITS)]:
        os.makedirs(folder, exist_ok=True)


# --------------------------------------------------------------------------------------------
# the planted world: prototypes, scenes, class frequencies

# spawn keys (dataset, purpose): the first entry keeps these streams apart from synthetic_llp's
_DATASET_KEY = 100
_WORLD, _NAMES, _LABELS, _FEATURES = ((_DATASET_KEY, purpose) for purpose in range(4))


def _build_world(seed, recipe):
    """{"class_probs": (35,), kind: {"prototypes": (35, D), "scene": (rank, D), "offset": (D,)}}."""
    rng = seeded_rng(seed, *_WORLD)
    weights = np.exp(0.5 * rng.standard_normal(LFAV_NUM_CLASSES))
    weights[LFAV_CLASS_INDEX["speech"]] = recipe.speech_weight
    world = {"class_probs": weights / weights.sum()}
    for kind, (_, dim) in FEATURE_KINDS.items():
        own = unit_rows(rng.standard_normal((LFAV_NUM_CLASSES, dim)))
        shared = unit_rows(rng.standard_normal((len(CONFUSABLE_PAIRS), dim)))
        prototypes = own.copy()
        for pair_index, pair in enumerate(CONFUSABLE_PAIRS):
            for name in pair:
                c = LFAV_CLASS_INDEX[name]
                prototypes[c] = (np.sqrt(recipe.shared_fraction) * shared[pair_index]
                                 + np.sqrt(1.0 - recipe.shared_fraction) * own[c])
        world[kind] = {
            "prototypes": unit_rows(prototypes).astype(np.float32),
            "scene": unit_rows(rng.standard_normal((recipe.scene_rank, dim))).astype(np.float32),
            "offset": (recipe.offset_scale * np.abs(rng.standard_normal(dim))).astype(np.float32),
        }
    return world


def _make_filenames(seed, split_sizes):
    """{split: [11-character id]}, unique over all splits even ignoring case (one .npy per id)."""
    rng = seeded_rng(seed, *_NAMES)
    taken, names = set(), {}
    for split in SPLITS:
        names[split] = []
        while len(names[split]) < split_sizes[split]:
            video_id = "".join(rng.choice(YOUTUBE_ID_ALPHABET, VIDEO_ID_LENGTH))
            if video_id.lower() not in taken:
                taken.add(video_id.lower())
                names[split].append(video_id)
    return names


# --------------------------------------------------------------------------------------------
# annotations: which class is where, per modality

def _sample_extent(rng, length, whole_prob, recipe):
    """(T,) bool: one to six runs of run_length_range snippets (log-uniform), or all True."""
    mask = np.zeros(length, dtype=bool)
    if rng.random() < whole_prob:
        mask[:] = True
        return mask
    n_runs = 1 + rng.choice(len(recipe.runs_probs), p=recipe.runs_probs)
    for _ in range(n_runs):
        shortest, longest = recipe.run_length_range
        run = min(length, int(np.exp(rng.uniform(np.log(shortest), np.log(longest + 1)))))
        start = int(rng.integers(0, length - run + 1))
        mask[start:start + run] = True
    return mask


def _visual_extent_of_av_event(rng, audio_extent, recipe):
    """Same as the audio extent, each run's onset and offset moved by up to av_max_jitter, or an
    independent extent."""
    draw = rng.random()
    if draw < recipe.av_same_extent_prob:
        return audio_extent.copy()
    length = len(audio_extent)
    if draw < recipe.av_same_extent_prob + recipe.av_jittered_extent_prob:
        mask = np.zeros_like(audio_extent)
        for onset, offset in _runs(audio_extent):
            moved_on, moved_off = rng.integers(-recipe.av_max_jitter, recipe.av_max_jitter + 1, size=2)
            onset = min(max(0, onset + int(moved_on)), length - 1)
            offset = min(length - 1, offset + int(moved_off))
            mask[onset:max(onset, offset) + 1] = True
        return mask
    return _sample_extent(rng, length, recipe.whole_video_prob_visual, recipe)


def _sample_video(rng, class_probs, min_length, max_length, recipe, covered=None):
    """audio, visual: (35, T) bool planted truth of one video, T uniform in [min_length, max_length].
    covered: a class index the video must have audio-visual (the visual extent a copy of the audio
    one), so that val and test hold every class in audio, visual and both, as the release's do."""
    length = int(rng.integers(min_length, max_length + 1))
    audio = np.zeros((LFAV_NUM_CLASSES, length), dtype=bool)
    visual = np.zeros_like(audio)
    n_classes = 1 + rng.choice(len(recipe.classes_per_video_probs), p=recipe.classes_per_video_probs)
    speech = LFAV_CLASS_INDEX["speech"]
    chosen = rng.choice(LFAV_NUM_CLASSES, size=n_classes, replace=False, p=class_probs)
    if covered is not None:
        audio[covered] = _sample_extent(rng, length, recipe.whole_video_prob_audio, recipe)
        visual[covered] = audio[covered]
        chosen = [c for c in chosen if c != covered]
    for c in chosen:
        modality = rng.choice(3, p=recipe.speech_modality_probs if c == speech else recipe.modality_probs)
        if modality in (0, 2):   # 0 audio-only, 1 visual-only, 2 audio-visual
            audio[c] = _sample_extent(rng, length, recipe.whole_video_prob_audio, recipe)
        if modality == 1:
            visual[c] = _sample_extent(rng, length, recipe.whole_video_prob_visual, recipe)
        if modality == 2:
            visual[c] = _visual_extent_of_av_event(rng, audio[c], recipe)
    return audio, visual


def _runs(row):
    """[(onset, offset)] of the maximal runs of True in a (T,) bool row, offsets inclusive."""
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def _event_rows(mask):
    """[(class, onset, offset)] of a (35, T) mask, by class then onset: the truth rows of a video."""
    return [(int(c), onset, offset) for c in range(mask.shape[0]) for onset, offset in _runs(mask[c])]


# --------------------------------------------------------------------------------------------
# features

def _synthesize_video(world, rng, audio_mask, visual_mask, recipe):
    """{"audio": (T, 128), "frames": (T, 512), "snippets": (T, 512)} float32 for one video."""
    length = audio_mask.shape[1]
    amplitudes = dict(recipe.amplitude)
    scene = recipe.scene_std * rng.standard_normal(recipe.scene_rank, dtype=np.float32)
    scene_per_snippet = scene + recipe.scene_drift * rng.standard_normal((length, recipe.scene_rank),
                                                                         dtype=np.float32)
    audio_classes = np.flatnonzero(audio_mask.any(axis=1))
    visual_classes = np.flatnonzero(visual_mask.any(axis=1))
    gains = {"audio": segment_amplitudes(rng, audio_mask[audio_classes], 1.0, recipe),      # (T, Ka)
             "visual": segment_amplitudes(rng, visual_mask[visual_classes], 1.0, recipe)}   # (T, Kv)
    frame_gain = gains["visual"] * (1.0 + recipe.frame_jitter * rng.standard_normal(
        gains["visual"].shape, dtype=np.float32))
    plan = (("audio", audio_classes, gains["audio"]), ("frames", visual_classes, frame_gain),
            ("snippets", visual_classes, gains["visual"]))
    feats = {}
    for kind, classes, gain in plan:
        feats[kind] = background_rows(rng, world[kind], scene_per_snippet, length, recipe)
        shapes = instance_prototypes(rng, world[kind]["prototypes"], classes, recipe)
        feats[kind] += combine_rows(amplitudes[kind] * gain, shapes)
        assert feats[kind].shape == (length, FEATURE_KINDS[kind][1]), (kind, feats[kind].shape)
    return feats


# --------------------------------------------------------------------------------------------
# files

def _write_truth(path, filenames, lengths, events):
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_filenames"] = np.array(filenames[split], dtype=f"<U{VIDEO_ID_LENGTH}")
        arrays[f"{split}_lengths"], arrays[f"{split}_events"] = lengths[split], events[split]
    save_npz_deterministic(path, arrays)


def _weak_lines(names, events, modalities):
    """`filename<TAB>class,class` per video: the classes with an event in one of `modalities`."""
    present = [set() for _ in names]
    for video, modality, cls, _, _ in events:
        if modality in modalities:
            present[video].add(int(cls))
    return [f"{name}\t{','.join(LFAV_CLASSES[c] for c in sorted(classes)) or SILENT_LABEL}"
            for name, classes in zip(names, present)]


def _write_label_files(label_dir, filenames, events):
    weak_header, truth_header = "\t".join(WEAK_COLUMNS), "\t".join(TRUTH_COLUMNS)
    for split, files in WEAK_LABEL_FILES.items():
        # the video-level file is the union of the audio and visual ones, as the release's README says
        for kind, modalities in (("video", (0, 1)), ("audio", (0,)), ("visual", (1,))):
            write_tsv_lines(os.path.join(label_dir, files[kind]), weak_header,
                         _weak_lines(filenames[split], events[split], modalities))
    for split, files in TRUTH_FILES.items():
        for m, modality in enumerate(MODALITIES):
            lines = [f"{filenames[split][video]}\t{onset}\t{offset}\t{LFAV_CLASSES[cls]}"
                     for video, row_modality, cls, onset, offset in events[split] if row_modality == m]
            write_tsv_lines(os.path.join(label_dir, files[modality]), truth_header, lines)


def _summary(params, filenames, lengths, events, feature_bytes):
    kinds = np.zeros(3, dtype=np.int64)   # (video, class) pairs: audio-only, visual-only, audio-visual
    for split in SPLITS:
        has = np.zeros((2, len(filenames[split]), LFAV_NUM_CLASSES), dtype=bool)
        has[events[split][:, 1], events[split][:, 0], events[split][:, 2]] = True
        kinds += [int((has[0] & ~has[1]).sum()), int((~has[0] & has[1]).sum()), int((has[0] & has[1]).sum())]
    total = max(int(kinds.sum()), 1)
    return {**_public(params), "format_version": FORMAT_VERSION,
            "videos": {split: len(filenames[split]) for split in SPLITS},
            "snippets": {split: int(lengths[split].sum()) for split in SPLITS},
            "truth_rows": {split: {modality: int((events[split][:, 1] == m).sum())
                                   for m, modality in enumerate(MODALITIES)} for split in SPLITS},
            "video_classes": int(kinds.sum()),
            "class_modality_fractions": {"audio_only": round(float(kinds[0]) / total, 3),
                                         "visual_only": round(float(kinds[1]) / total, 3),
                                         "audio_visual": round(float(kinds[2]) / total, 3)},
            "feature_bytes": int(feature_bytes), "recipe": asdict(RECIPE)}
