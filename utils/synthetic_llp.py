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

Everything is a function of `seed` (one SeedSequence per purpose, one per video), so the same
arguments give the same bytes. `root/.synthetic_complete` is written last; an interrupted run
leaves `root/.synthetic_partial` instead and is regenerated from scratch next time.
"""
import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

from utils.constants import (CLASS_INDEX, CLASSES, EVAL_AUDIO_CSV, EVAL_COLUMNS, EVAL_VISUAL_CSV, FEATURE_KINDS,
                             FRAMES_PER_SEGMENT, LABEL_FULL_CSV, LABEL_TEST_CSV, LABEL_TRAIN_CSV,
                             LABEL_VAL_CSV, NUM_CLASSES, NUM_SEGMENTS, YOUTUBE_ID_LENGTH)
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

# Pairs of related classes whose prototypes share half their energy (in every feature kind).
CONFUSABLE_PAIRS = (
    ("Violin_fiddle", "Cello"), ("Acoustic_guitar", "Banjo"), ("Baby_laughter", "Baby_cry_infant_cry"),
    ("Lawn_mower", "Chainsaw"), ("Car", "Motorcycle"), ("Vacuum_cleaner", "Blender"),
    ("Cheering", "Clapping"), ("Dog", "Cat"), ("Fire_alarm", "Telephone_bell_ringing"),
    ("Speech", "Singing"),
)

_YOUTUBE_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
_CLIP_SECONDS = NUM_SEGMENTS  # one segment per second


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


# --------------------------------------------------------------------------------------------
# public API

def generate_synthetic_llp(root, n_train, n_val, n_test, seed=0, feature_dtype="float32",
                           progress=False):
    """Write a synthetic LLP under `root` (layout in the module docstring); returns a summary dict.

    A no-op (summary with "skipped": True) when `root` already holds a complete dataset with the
    same parameters. Refuses (FileExistsError) to write into a folder holding annotation files or
    features that this generator did not write.
    """
    params = _params(n_train, n_val, n_test, seed, feature_dtype)
    started = time.perf_counter()
    if is_complete(root, **_public(params)):
        with open(os.path.join(root, COMPLETE_MARKER)) as handle:
            summary = json.load(handle)["summary"]
        return {**summary, "root": str(root), "skipped": True, "seconds": 0.0}
    _claim_root(root, params)

    world = _build_world(seed, RECIPE)
    split_sizes = {"train": n_train, "val": n_val, "test": n_test}
    filenames = _make_filenames(seed, split_sizes)
    truth = {split: _sample_annotations(seed, split, split_sizes[split], world["class_weights"], RECIPE)
             for split in SPLITS}

    data_dir, feat_dirs = _layout(root)
    jobs = [(split, i) for split in SPLITS for i in range(split_sizes[split])]
    iterator = jobs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(jobs, desc="synthetic LLP features", unit="video")
    feature_bytes = 0
    for split, i in iterator:
        audio_mask, visual_mask = truth[split][0][i], truth[split][1][i]
        feats = _synthesize_video(world, seed, split, i, audio_mask, visual_mask, RECIPE)
        video_id = filenames[split][i][:YOUTUBE_ID_LENGTH]
        for kind, array in feats.items():
            path = os.path.join(feat_dirs[kind], video_id + ".npy")
            np.save(path, array.astype(feature_dtype, copy=False))
            feature_bytes += os.path.getsize(path)

    _write_truth(os.path.join(data_dir, TRUTH_FILE), filenames, truth)
    _write_annotation_csvs(data_dir, filenames, truth)
    summary = _summary(params, filenames, truth, feature_bytes)
    atomic_write_json({"params": params, "summary": summary}, os.path.join(root, COMPLETE_MARKER))
    os.remove(os.path.join(root, PARTIAL_MARKER))
    return {**summary, "root": str(root), "skipped": False,
            "seconds": round(time.perf_counter() - started, 2)}


def is_complete(root, n_train, n_val, n_test, seed=0, feature_dtype="float32"):
    """True when `root` holds a finished synthetic LLP generated with exactly these parameters."""
    marker = os.path.join(root, COMPLETE_MARKER)
    if not os.path.isfile(marker) or os.path.exists(os.path.join(root, PARTIAL_MARKER)):
        return False
    try:
        with open(marker) as handle:
            stored = json.load(handle)["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if stored != _params(n_train, n_val, n_test, seed, feature_dtype):
        return False
    data_dir, _ = _layout(root, create=False)
    needed = list(SPLIT_LABEL_CSV.values()) + [LABEL_FULL_CSV, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, TRUTH_FILE]
    return all(os.path.isfile(os.path.join(data_dir, name)) for name in needed)


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

def _params(n_train, n_val, n_test, seed, feature_dtype):
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
    return {"n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test), "seed": int(seed),
            "feature_dtype": feature_dtype, "format_version": FORMAT_VERSION}


def _public(params):
    return {key: value for key, value in params.items() if key != "format_version"}


def _layout(root, create=True):
    data_dir = os.path.join(root, "data")
    feat_dirs = {kind: os.path.join(root, "feats", folder) for kind, (folder, _) in FEATURE_KINDS.items()}
    if create:
        for folder in [data_dir, *feat_dirs.values()]:
            os.makedirs(folder, exist_ok=True)
    return data_dir, feat_dirs


def _claim_root(root, params):
    """Mark `root` as being written; remove what an earlier generation left in it."""
    ours = any(os.path.exists(os.path.join(root, marker)) for marker in (COMPLETE_MARKER, PARTIAL_MARKER))
    data_dir, feat_dirs = _layout(root, create=False)
    ours_names = set(SPLIT_LABEL_CSV.values()) | {LABEL_FULL_CSV, EVAL_AUDIO_CSV, EVAL_VISUAL_CSV, TRUTH_FILE}
    leftovers = [os.path.join(data_dir, name) for name in sorted(ours_names)
                 if os.path.exists(os.path.join(data_dir, name))]
    for folder in feat_dirs.values():
        if os.path.isdir(folder):
            leftovers += [os.path.join(folder, name) for name in sorted(os.listdir(folder))
                          if name.endswith(".npy")]
    if leftovers and not ours:
        raise FileExistsError(f"{root} already holds annotation or feature files that the synthetic "
                              f"generator did not write (e.g. {leftovers[0]}); choose an empty folder")
    os.makedirs(root, exist_ok=True)
    atomic_write_json({"params": params}, os.path.join(root, PARTIAL_MARKER))
    complete = os.path.join(root, COMPLETE_MARKER)
    if os.path.exists(complete):
        os.remove(complete)
    for path in leftovers:  # stale videos of another size or seed would otherwise linger
        os.remove(path)
    _layout(root)


# --------------------------------------------------------------------------------------------
# the planted world: prototypes, scenes, class frequencies

def _rng(seed, *purpose):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=purpose))


_PURPOSE_WORLD, _PURPOSE_NAMES, _PURPOSE_LABELS, _PURPOSE_FEATURES = range(4)


def _unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def _build_world(seed, recipe):
    """Prototypes (25, D) per feature kind, scene bases (rank, D), offsets (D,), class weights."""
    rng = _rng(seed, _PURPOSE_WORLD)
    world = {"class_weights": np.exp(0.5 * rng.standard_normal(NUM_CLASSES))}
    world["class_weights"][CLASS_INDEX["Speech"]] = recipe.speech_weight
    partner = {}
    for pair_index, (first, second) in enumerate(CONFUSABLE_PAIRS):
        partner[CLASS_INDEX[first]] = pair_index
        partner[CLASS_INDEX[second]] = pair_index
    for kind, (_, shape) in FEATURE_KINDS.items():
        dim = shape[-1]
        own = _unit_rows(rng.standard_normal((NUM_CLASSES, dim)))
        shared = _unit_rows(rng.standard_normal((len(CONFUSABLE_PAIRS), dim)))
        prototypes = own.copy()
        for c, pair_index in partner.items():
            prototypes[c] = (np.sqrt(recipe.shared_fraction) * shared[pair_index]
                             + np.sqrt(1.0 - recipe.shared_fraction) * own[c])
        world[kind] = {
            "prototypes": _unit_rows(prototypes).astype(np.float32),
            "scene": _unit_rows(rng.standard_normal((recipe.scene_rank, dim))).astype(np.float32),
            "offset": (recipe.offset_scale * np.abs(rng.standard_normal(dim))).astype(np.float32),
        }
    return world


def _make_filenames(seed, split_sizes):
    """{split: [<11-char id>_<start>_<end>]}, ids unique over all splits."""
    rng = _rng(seed, _PURPOSE_NAMES)
    taken = set()
    names = {}
    for split in SPLITS:
        names[split] = []
        while len(names[split]) < split_sizes[split]:
            video_id = "".join(rng.choice(_YOUTUBE_ID_ALPHABET, YOUTUBE_ID_LENGTH))
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
    rng = _rng(seed, _PURPOSE_LABELS, SPLITS.index(split))
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

def _instance_prototypes(rng, prototypes, classes, recipe):
    """(len(classes), D) per-video variants of the class prototypes."""
    base = prototypes[classes]
    dim = base.shape[-1]
    perturbation = rng.standard_normal(base.shape, dtype=np.float32) / np.sqrt(dim)
    return _unit_rows(base + recipe.instance_variation * perturbation).astype(np.float32)


def _segment_amplitudes(rng, masks, base_amplitude, recipe):
    """(10, K) amplitude of each of K classes in each segment (0 where the mask is 0)."""
    low, high = recipe.amplitude_range
    factors = rng.uniform(low, high, size=masks.shape).astype(np.float32)
    return (base_amplitude * factors * masks).T


def _combine(weights, rows):
    """(n, K) @ (K, D) as K rank-one updates in float32.

    Not `@`: BLAS sums in an order that depends on the library and its thread count (so would
    the bytes), and its threads only get in each other's way on products this small.
    """
    out = np.zeros((weights.shape[0], rows.shape[1]), dtype=np.float32)
    for k in range(rows.shape[0]):
        out += weights[:, k:k + 1].astype(np.float32) * rows[k]
    return out


def _background(rng, world_kind, scene_coefficients, n_rows, recipe):
    """(n_rows, D) offset + scene + white noise; scene_coefficients (n_rows, rank)."""
    dim = world_kind["offset"].shape[0]
    noise = rng.standard_normal((n_rows, dim), dtype=np.float32)
    noise *= recipe.noise_std
    noise += world_kind["offset"]
    noise += _combine(scene_coefficients, world_kind["scene"])
    return noise


def _synthesize_video(world, seed, split, index, audio_mask, visual_mask, recipe):
    """{"audio": (10, 128), "frames": (80, 2048), "snippets": (10, 512)} float32 for one video."""
    rng = _rng(seed, _PURPOSE_FEATURES, SPLITS.index(split), index)
    amplitudes = dict(recipe.amplitude)
    scene = recipe.scene_std * rng.standard_normal(recipe.scene_rank, dtype=np.float32)
    scene_per_segment = scene + recipe.scene_drift * rng.standard_normal(
        (NUM_SEGMENTS, recipe.scene_rank), dtype=np.float32)

    audio_classes = np.flatnonzero(audio_mask.any(axis=1))
    visual_classes = np.flatnonzero(visual_mask.any(axis=1))
    audio_gain = _segment_amplitudes(rng, audio_mask[audio_classes], 1.0, recipe)      # (10, Ka)
    visual_gain = _segment_amplitudes(rng, visual_mask[visual_classes], 1.0, recipe)   # (10, Kv)

    feats = {}
    world_kind = world["audio"]
    audio = _background(rng, world_kind, scene_per_segment, NUM_SEGMENTS, recipe)
    shapes = _instance_prototypes(rng, world_kind["prototypes"], audio_classes, recipe)
    audio += _combine(amplitudes["audio"] * audio_gain, shapes)
    feats["audio"] = audio

    world_kind = world["frames"]
    scene_per_frame = np.repeat(scene_per_segment, FRAMES_PER_SEGMENT, axis=0)
    frames = _background(rng, world_kind, scene_per_frame, NUM_SEGMENTS * FRAMES_PER_SEGMENT, recipe)
    shapes = _instance_prototypes(rng, world_kind["prototypes"], visual_classes, recipe)
    frame_gain = np.repeat(visual_gain, FRAMES_PER_SEGMENT, axis=0)
    frame_gain = frame_gain * (1.0 + recipe.frame_jitter * rng.standard_normal(
        frame_gain.shape, dtype=np.float32))
    frames += _combine(amplitudes["frames"] * frame_gain, shapes)
    feats["frames"] = frames

    world_kind = world["snippets"]
    snippets = _background(rng, world_kind, scene_per_segment, NUM_SEGMENTS, recipe)
    shapes = _instance_prototypes(rng, world_kind["prototypes"], visual_classes, recipe)
    snippets += _combine(amplitudes["snippets"] * visual_gain, shapes)
    feats["snippets"] = snippets

    for kind, (_, shape) in FEATURE_KINDS.items():
        assert feats[kind].shape == shape, (kind, feats[kind].shape)
    return feats


# --------------------------------------------------------------------------------------------
# files

def _save_npz_deterministic(path, arrays):
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
    _save_npz_deterministic(path, arrays)


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
        _write_lines(os.path.join(data_dir, SPLIT_LABEL_CSV[split]), weak_header, weak[split])
    # as in LLP: the full file is train, val, test in that order
    _write_lines(os.path.join(data_dir, LABEL_FULL_CSV), weak_header,
                 [line for split in SPLITS for line in weak[split]])
    for file_name, modality in ((EVAL_AUDIO_CSV, 0), (EVAL_VISUAL_CSV, 1)):
        lines = ["\t".join(map(str, row)) for split in EVAL_SPLITS
                 for row in event_rows(filenames[split], truth[split][modality])]
        _write_lines(os.path.join(data_dir, file_name), "\t".join(EVAL_COLUMNS), lines)


def _write_lines(path, header, lines):
    atomic_write_text("\n".join([header, *lines]) + "\n", path)


def _summary(params, filenames, truth, feature_bytes):
    kinds = np.zeros(3, dtype=np.int64)  # audio-only, visual-only, audio-visual events
    for audio, visual in truth.values():
        has_audio, has_visual = audio.any(axis=2), visual.any(axis=2)
        kinds += [int((has_audio & ~has_visual).sum()), int((~has_audio & has_visual).sum()),
                  int((has_audio & has_visual).sum())]
    total = max(int(kinds.sum()), 1)
    return {**_public(params), "format_version": FORMAT_VERSION,
            "videos": {split: len(filenames[split]) for split in SPLITS},
            "events": int(kinds.sum()),
            "event_modality_fractions": {"audio_only": round(float(kinds[0]) / total, 3),
                                         "visual_only": round(float(kinds[1]) / total, 3),
                                         "audio_visual": round(float(kinds[2]) / total, 3)},
            "feature_bytes": int(feature_bytes),
            "recipe": asdict(RECIPE)}
