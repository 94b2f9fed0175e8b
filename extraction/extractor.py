"""From video files to LLP's three feature kinds and VALOR's CLAP and CLIP features, window by
window (docs/PROTOCOL.md §15).

`FeatureExtractor` holds the networks of the kinds asked for (pretrained, or random for a smoke
test) and turns one probed video into (windows, rows, dim) arrays: VGGish (10, 128), ResNet152
(80, 2048) and R(2+1)D-18 (10, 512) per 10-s window, the rows and settings of the original
extraction, and CLAP (64, 768) and CLIP (10, 768) as VALOR's preprocessing makes them; beside
them CLAP's (10, 512) unit audio embeddings of VALOR's ten ~1-s windows (`clap_windows`, what
scripts/make_zero_shot_labels.py scores, no model input).
`check_videos` probes and checks many files without any network (every bad one named in one
error); `extract_videos` runs the extractor over them, writes each window's features in the
official folder layout (VALOR's for CLAP and CLIP) with the records of extraction/records.py, and
resumes after the last finished video.
"""
import contextlib
import io
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from avvp_data.llp import (
    CLAP_FEATURE_SHAPE,
    CLIP_FEATURE_SHAPE,
    FEATURE_KINDS,
    FRAMES_PER_SEGMENT,
    NUM_SEGMENTS,
    VALOR_FEATURES_FOLDER,
)
from extraction import (
    clap_audio,
    clap_mel,
    clap_text,
    clip_vision,
    decode,
    image_transforms,
    records,
    vggish,
    visual_nets,
    weights,
)
from extraction.windows import SEGMENT_SECONDS, WINDOW_SECONDS, VideoTooShort, describe_plan, plan_windows
from utils.errors import UsageError, bulleted
from utils.io import atomic_write_bytes

FRAME_RATE = FRAMES_PER_SEGMENT // SEGMENT_SECONDS   # 8 fps: ffmpeg -r 8 in the original
FRAMES_PER_WINDOW = NUM_SEGMENTS * FRAMES_PER_SEGMENT
# extraction kind -> (the model input it feeds: a dataloader feature kind, or None for none; its
# folder under the output root; the rows and dim of one window's file): the official layout, and
# VALOR's for CLAP/CLIP
KIND_LAYOUT = {
    **{kind: (kind, os.path.join("feats", folder), shape) for kind, (folder, shape) in FEATURE_KINDS.items()},
    "clap": ("audio", os.path.join("CLAP", VALOR_FEATURES_FOLDER), CLAP_FEATURE_SHAPE),
    "clip": ("frames", os.path.join("CLIP", VALOR_FEATURES_FOLDER), CLIP_FEATURE_SHAPE),
    # the zero-shot pseudo-labels' audio scores (docs/ZERO_SHOT.md), not a model input
    "clap_windows": (None, os.path.join("CLAP", "window_embeddings"), (clap_text.CLAP_WINDOWS, clap_text.JOINT_DIM)),
}
KINDS = tuple(KIND_LAYOUT)
OFFICIAL_KINDS = tuple(FEATURE_KINDS)   # what LLP's released features are, the default
AUDIO_KINDS = ("audio", "clap", "clap_windows")   # the kinds that need an audio track
CLAP_KINDS = ("clap", "clap_windows")             # the kinds that read the 48-kHz track
# every setting that decides the numbers, recorded beside the features (docs/OWN_VIDEOS.md, "Feature
# extraction beside the original")
SETTINGS = {
    "audio": {
        "network": "VGGish",
        "decoding": f"{decode.AUDIO_RATE} Hz, 2 channels, 16-bit (libswresample), mean of the channels",
        "front_end": "log mel: 25 ms periodic Hann windows every 10 ms, 512-point FFT magnitude, 64 HTK mel "
                     "bands 125-7500 Hz, log(mel + 0.01)",
        "examples": "one 0.96-s example (96 frames) per 1-s segment, 10 per window",
        "window_padding": "zeros past the end of the audio track",
        "layer": "128-d embedding after the last ReLU",
    },
    "frames": {
        "network": "ResNet152",
        "frame_rate": FRAME_RATE,
        "frame_choice": "the frame shown at k/8 s: the last one presented at or before it",
        "frames_per_window": FRAMES_PER_WINDOW,
        "resize": "shorter side to 256, PIL bilinear",
        "crop": "centre 224 x 224",
        "normalisation": "[0, 1], ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
        "layer": "2048-d global average pool",
    },
    "snippets": {
        "network": "R(2+1)D-18",
        "frame_rate": FRAME_RATE,
        "frame_choice": "the frames of the ResNet152 path, 8 consecutive per 1-s clip",
        "resize": "112 x 112 (aspect not kept), PIL bilinear",
        "normalisation": "[0, 1], Kinetics mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989)",
        "layer": "512-d global average pool",
    },
    "clap": {
        "network": "CLAP HTSAT-tiny (audio branch, feature fusion)",
        "decoding": f"{clap_mel.SAMPLE_RATE} Hz, 2 channels, 16-bit (libswresample), mean of the channels "
                    "(VALOR: librosa's soxr resampler)",
        "clip": f"{clap_mel.CLIP_SAMPLES} samples per window by index picking, int16 round trip",
        "front_end": f"fusion mel: {clap_mel.WINDOW_SIZE}-point STFT every {clap_mel.HOP_SIZE} samples, power, "
                     f"{clap_mel.MEL_BINS} HTK mel bands {clap_mel.MEL_FMIN:g}-{clap_mel.MEL_FMAX:g} Hz, dB",
        "window_padding": "zeros past the end of the audio track",
        "layer": "the (64, 768) map after the final LayerNorm, rows grouped as VALOR saves them",
    },
    "clip": {
        "network": "CLIP ViT-L/14 (vision tower and projection)",
        "frame_rate": FRAME_RATE,
        "frame_choice": "10 of the window's 80 grid frames at round(linspace(0, 79, 10))",
        "resize": "224 x 224 bilinear on the [0, 1] float tensor, no antialias, aspect not kept",
        "normalisation": f"CLIP mean {clip_vision.CLIP_MEAN}, std {clip_vision.CLIP_STD}",
        "layer": "768-d get_image_features, L2-normalised",
    },
    "clap_windows": {
        "network": "CLAP HTSAT-tiny (audio branch, feature fusion) and audio projection",
        "decoding": f"{clap_mel.SAMPLE_RATE} Hz, 2 channels, 16-bit (libswresample), mean of the channels "
                    "(VALOR: librosa's soxr resampler)",
        "clip": f"the window's {clap_mel.CLIP_SAMPLES} samples, zeros past the end of the audio track (VALOR: the "
                "whole loaded clip)",
        "windows": f"{clap_text.CLAP_WINDOWS} windows of N // {clap_text.CLAP_WINDOWS} samples from "
                   f"round(linspace(0, N, {clap_text.CLAP_WINDOWS + 1}))[:{clap_text.CLAP_WINDOWS}], each int16 "
                   f"round trip, then laion's repeatpad to {clap_mel.CLIP_SAMPLES} samples",
        "front_end": f"fusion mel: {clap_mel.WINDOW_SIZE}-point STFT every {clap_mel.HOP_SIZE} samples, power, "
                     f"{clap_mel.MEL_BINS} HTK mel bands {clap_mel.MEL_FMIN:g}-{clap_mel.MEL_FMAX:g} Hz, dB",
        "layer": f"{clap_text.JOINT_DIM}-d audio_projection of the mean of the (64, 768) map, L2-normalised "
                 "(laion's get_audio_embedding_from_data)",
    },
}
NETWORK_WEIGHTS = {"audio": "vggish", "frames": "resnet152", "snippets": "r2plus1d_18", "clap": "clap", "clip": "clip",
                   "clap_windows": "clap"}
# examples, images, clips, 10-s clips, images, ~1-s audio windows per forward pass
DEFAULT_BATCH = {"audio": 64, "frames": 32, "snippets": 8, "clap": 1, "clip": 10,
                 "clap_windows": clap_text.CLAP_WINDOWS}
# without a progress bar (output to a file), at most one line per this many seconds says a finished
# window: a window takes about 30 s on a CPU, so a long video is not minutes of silence
PROGRESS_LINE_SECONDS = 10


def add_extraction_arguments(parser):
    """The flags scripts/extract_features.py and parse_video.py share (read by `extractor_from_args`)."""
    parser.add_argument("--weights_dir", default=None,
                        help="folder holding the pretrained weight files (offline machines); default: download them "
                             "once into torch.hub's cache")
    parser.add_argument("--random_weights", action="store_true",
                        help="smoke test: untrained feature networks; the records and results say so, and "
                             "main_DHHN.py refuses such features")
    parser.add_argument("--vggish_postprocess", action="store_true",
                        help="AudioSet's PCA + 8-bit quantisation of the VGGish embeddings (not how LLP's features "
                             "were made)")
    parser.add_argument("--allow_variable_frame_rate", action="store_true",
                        help="take variable-frame-rate videos, sampling their frames by time")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', ...")
    for kind in KINDS:
        parser.add_argument(f"--{kind}_batch", type=int, default=DEFAULT_BATCH[kind],
                            help=f"{kind}: network inputs per forward pass")


def extractor_from_args(args, device, kinds=OFFICIAL_KINDS):
    """The FeatureExtractor the flags of `add_extraction_arguments` ask for, on `device`."""
    batch_sizes = {kind: getattr(args, f"{kind}_batch") for kind in KINDS}
    for kind, size in batch_sizes.items():
        if size < 1:
            raise UsageError(f"--{kind}_batch {size}: must be at least 1")
    return FeatureExtractor(kinds=kinds, device=device, weights_dir=args.weights_dir,
                            random_weights=args.random_weights, vggish_postprocess=args.vggish_postprocess,
                            batch_sizes=batch_sizes)


def feature_folder(root, kind):
    """<root>/feats/<published folder name> (the official layout, dataloader.OFFICIAL_LAYOUT), or
    <root>/CLAP/features and <root>/CLIP/features (VALOR's layout), or <root>/CLAP/window_embeddings."""
    return os.path.join(root, KIND_LAYOUT[kind][1])


def model_inputs(kinds):
    """{dataloader feature kind: extraction kind} of a set of extraction kinds that feeds a model
    (one kind per input), e.g. {"audio": "clap", "frames": "clip", "snippets": "snippets"}."""
    inputs = {}
    for kind in kinds:
        feeds = KIND_LAYOUT[kind][0]
        if feeds is None:   # feeds no model
            continue
        if feeds in inputs:
            raise UsageError(f"--kinds {inputs[feeds]} and {kind} both make the {feeds} input of a model")
        inputs[feeds] = kind
    return inputs


def window_ids(name, windows):
    """Feature ids of a video's windows: the name itself for one window, else `<name>_<start>_<end>`."""
    if len(windows) == 1:
        return [name]
    return [f"{name}_{w.start}_{w.start + WINDOW_SECONDS}" for w in windows]


class FeatureExtractor:
    """The networks of `kinds` on `device`, ready to turn probed videos into features.

    random_weights: build the networks untrained (seeded), for smoke tests and CI; the records
    say so and training refuses such features. vggish_postprocess: AudioSet's PCA, clipping and
    8-bit quantisation of the embeddings (off as in the LLP extraction).
    """

    def __init__(self, kinds=OFFICIAL_KINDS, device="cpu", weights_dir=None, random_weights=False,
                 vggish_postprocess=False, batch_sizes=None, seed=0):
        decode.require_av()   # a missing optional dependency is said before any network is built
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise UsageError(f"--kinds: unknown {sorted(unknown)}; choose from {', '.join(KINDS)}")
        if random_weights and vggish_postprocess:
            raise UsageError("--vggish_postprocess needs the published PCA parameters, not --random_weights")
        self.kinds = tuple(kind for kind in KINDS if kind in kinds)
        self.device = torch.device(device)
        self.random_weights = random_weights
        self.batch_sizes = {**DEFAULT_BATCH, **(batch_sizes or {})}
        self.networks, self.weight_records = {}, {}
        self.postprocessor = None
        generator_state = torch.random.get_rng_state()
        try:
            for kind in self.kinds:
                # random weights are the same in every run, whichever other kinds are built
                torch.manual_seed(seed + KINDS.index(kind))
                self.networks[kind] = self._build(kind, weights_dir).to(self.device).eval()
        finally:
            torch.random.set_rng_state(generator_state)
        if vggish_postprocess and "audio" in self.kinds:
            pca, record = weights.load_state_dict("vggish_pca", weights_dir)
            self.postprocessor = vggish.load_pca(pca)
            self.weight_records["audio"] = [self.weight_records["audio"], record]
        self.vggish_postprocess = vggish_postprocess

    def _build(self, kind, weights_dir):
        network = {"audio": vggish.VGGish, "frames": visual_nets.resnet152, "snippets": visual_nets.r2plus1d_18,
                   "clap": clap_audio.htsat_tiny, "clip": clip_vision.clip_vit_l14,
                   "clap_windows": lambda: clap_text.CLAPWindowEncoder(clap_audio.htsat_tiny())}[kind]()
        if self.random_weights:
            self.weight_records[kind] = "random"
            return network
        state_dict, record = weights.load_state_dict(NETWORK_WEIGHTS[kind], weights_dir)
        try:
            if kind == "audio":
                vggish.load_vggish_weights(network, state_dict)
            elif kind == "clap":
                clap_audio.load_clap_audio_weights(network, state_dict)
            elif kind == "clap_windows":
                clap_text.load_clap_window_weights(network, state_dict)
            elif kind == "clip":
                clip_vision.load_clip_vision_weights(network, state_dict)
            else:
                network.load_state_dict(state_dict)
        except (ValueError, RuntimeError) as error:   # keys or shapes of another network
            raise UsageError(f"{record['file']} does not fit {SETTINGS[kind]['network']}: {error}") from None
        self.weight_records[kind] = record
        return network

    def _encode(self, kind, inputs):
        """The feature layer of `kind`'s network: VGGish's embedding, CLAP's map or unit window
        embeddings, the visual nets' pooled features, CLIP's L2-normalised embedding."""
        network = self.networks[kind]
        return network(inputs) if kind in AUDIO_KINDS else network.features(inputs)

    def record(self, kind):
        """The extraction record of `kind`'s folder (extraction/records.py)."""
        settings = dict(SETTINGS[kind])
        if kind == "audio":
            settings["postprocess"] = ("AudioSet PCA, clip to [-2, 2], 8-bit quantisation"
                                       if self.vggish_postprocess else "none (raw embedding)")
        return {"kind": kind, "network": settings.pop("network"), "weights": self.weight_records[kind],
                "random_weights": self.random_weights, "settings": settings,
                "rows": list(KIND_LAYOUT[kind][2]), "tool": "scripts/extract_features.py"}

    @torch.no_grad()
    def _run(self, kind, items, to_input=torch.from_numpy):
        """The feature layer of `kind` over `items` (batch first) in batches, each made a float
        tensor by `to_input` only when its turn comes (uint8 pixels stay 4x smaller); numpy float32."""
        size = self.batch_sizes[kind]
        outputs = [self._encode(kind, to_input(items[i:i + size]).to(self.device)).float().cpu()
                   for i in range(0, len(items), size)]
        return torch.cat(outputs).numpy()

    def extract(self, info, on_window=None):
        """(windows, {kind: (W, rows, dim) float32}) of a probed video (decode.VideoInfo), made
        window by window from one decoding pass, so that only one window's frames are held.
        on_window(number, windows, seconds): called after each window (number from 1), with the
        seconds since the one before (the first's include reading the audio track)."""
        try:
            windows = plan_windows(info.duration)
        except VideoTooShort as error:
            raise decode.VideoInputError(f"{info.path}: {error}") from None
        started = time.perf_counter()
        mono = decode.read_audio(info) if "audio" in self.kinds else None
        mono_48k = decode.read_audio(info, clap_mel.SAMPLE_RATE) if set(CLAP_KINDS) & set(self.kinds) else None
        visual = bool({"frames", "snippets", "clip"} & set(self.kinds))
        per_window, known = [], {}
        with contextlib.closing(self._window_frames(info, windows)) as shown:
            for number, window in enumerate(windows, 1):
                features = {}
                if mono is not None:
                    features["audio"] = self._audio(mono, window)
                if "clap" in self.kinds:
                    features["clap"] = self._clap(mono_48k, window)
                if "clap_windows" in self.kinds:
                    features["clap_windows"] = self._clap_windows(mono_48k, window)
                if visual:
                    visual_features, known = self._visual(next(shown), known)
                    features.update(visual_features)
                per_window.append(features)
                if on_window is not None:
                    on_window(number, windows, time.perf_counter() - started)
                started = time.perf_counter()
        return windows, {kind: np.stack([features[kind] for features in per_window]) for kind in per_window[0]}

    def _audio(self, mono, window):
        """(10, 128) VGGish features of one window of the 16-kHz track `mono`."""
        examples = vggish.log_mel_examples(decode.audio_window(mono, window.start, WINDOW_SECONDS))
        embeddings = self._run("audio", examples)
        if self.postprocessor is not None:
            embeddings = self.postprocessor(torch.from_numpy(embeddings)).numpy()
        return embeddings.reshape(NUM_SEGMENTS, -1).astype(np.float32)

    def _clap(self, mono, window):
        """(64, 768) CLAP map of one window of the 48-kHz track `mono` (VALOR's preprocessing)."""
        mel = clap_mel.fusion_mel(clap_mel.prepare_clip(clap_clip(mono, window), clap_mel.SAMPLE_RATE))
        return self._run("clap", mel[None], to_input=lambda batch: batch)[0].astype(np.float32)

    def _clap_windows(self, mono, window):
        """(10, 512) unit CLAP audio embeddings of VALOR's ten ~1-s windows of one window of the
        48-kHz track `mono` (clap_text.clap_window_embeddings, in batches of --clap_windows_batch)."""
        mels = clap_text.window_mels(clap_clip(mono, window))
        return self._run("clap_windows", mels, to_input=lambda batch: batch).astype(np.float32)

    def _window_frames(self, info, windows):
        """Per window, in order, the prepared frames shown at its 80 grid times, from one decoding
        pass; frames of the overlap of an end-aligned last window are the window before's objects."""
        wanted = {kind for kind in ("frames", "snippets") if kind in self.kinds}
        if not wanted and "clip" not in self.kinds:
            return

        def prepare(image):   # only the resized pixels of the frames in use are held
            pixels = {kind: image_transforms.frame_pixels(kind, image) for kind in wanted}
            if "clip" in self.kinds:
                pixels["clip"] = clip_vision.resized_frame(image)
            return pixels

        grid = [w.start * FRAME_RATE + k for w in windows for k in range(FRAMES_PER_WINDOW)]
        held = {}
        with contextlib.closing(decode.iter_grid_frames(info, grid, FRAME_RATE, prepare)) as shown:
            for window in windows:
                first = window.start * FRAME_RATE
                held = {k: item for k, item in held.items() if k >= first}
                while first + FRAMES_PER_WINDOW - 1 not in held:
                    k, item = next(shown)
                    held[k] = item
                yield [held[k] for k in range(first, first + FRAMES_PER_WINDOW)]

    def _visual(self, shown, known):
        """({"frames": (80, 2048), "snippets": (10, 512)} of one window from its 80 shown frames, the
        `known` of the next window): a frame shown at several grid times (a held last frame, a video
        under 8 fps) and a clip of such frames go through the network once, their features are
        copied; those of the window before (`known`, by kind) are not computed again."""
        features, now_known = {}, {}
        if "frames" in self.kinds:
            features["frames"], now_known["frames"] = self._unique_features(
                "frames", shown, id, known.get("frames", {}),
                lambda batch: image_transforms.network_input("frames", np.stack([item["frames"] for item in batch])))
        if "snippets" in self.kinds:
            clips = [tuple(shown[i:i + FRAMES_PER_SEGMENT]) for i in range(0, FRAMES_PER_WINDOW, FRAMES_PER_SEGMENT)]

            def clip_input(batch):   # clips of 8 prepared frames -> (B, 3, 8, 112, 112) normalised
                frames = np.stack([frame["snippets"] for clip in batch for frame in clip])
                return image_transforms.r2plus1d_clips(image_transforms.network_input("snippets", frames))

            features["snippets"], now_known["snippets"] = self._unique_features(
                "snippets", clips, lambda clip: tuple(map(id, clip)), known.get("snippets", {}), clip_input)
        if "clip" in self.kinds:
            picked = [shown[index] for index in clip_vision.clip_frame_indices(len(shown))]
            features["clip"], now_known["clip"] = self._unique_features(
                "clip", picked, id, known.get("clip", {}),
                lambda batch: image_transforms.normalize(torch.stack([item["clip"] for item in batch]),
                                                         clip_vision.CLIP_MEAN, clip_vision.CLIP_STD))
        return features, now_known

    def _unique_features(self, kind, items, key, known, to_input):
        """((len(items), dim) features of `kind`, {key: (item, features)} of the distinct items):
        each distinct item (by `key`) goes through the network once, and not at all when `known`
        holds it. The items are kept in the result so that an id used as key is never reused."""
        item_of, unique = unique_items(items, key=key)
        fresh = [item for item in unique if key(item) not in known]
        computed = iter(self._run(kind, fresh, to_input) if fresh else ())
        rows = np.stack([known[key(item)][1] if key(item) in known else next(computed) for item in unique])
        return rows[item_of], {key(item): (item, row) for item, row in zip(unique, rows)}


def clap_clip(mono, window):
    """The 480,000 samples of one 10-s window of the 48-kHz track `mono`, zeros past its end."""
    return decode.audio_window(mono, window.start, WINDOW_SECONDS, clap_mel.SAMPLE_RATE)


def unique_items(items, key=None):
    """(index (len(items),) into the unique items, the unique items in first-seen order); items
    are compared by `key` (default: themselves, hashable)."""
    position, unique, index = {}, [], []
    for item in items:
        marker = item if key is None else key(item)
        if marker not in position:
            position[marker] = len(unique)
            unique.append(item)
        index.append(position[marker])
    return np.array(index), unique


def save_array(array, path):
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(buffer.getvalue(), path)


def video_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def source_identity(path):
    status = os.stat(path)
    return {"source": os.path.abspath(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def name_clashes(paths):
    """["a and b would write the same features (name); rename one"] for videos of `paths` that would
    get one name (the file name without extension): features, records and parse_video's results
    are named by it."""
    seen, clashes = {}, []
    for path in paths:
        name = video_name(path)
        if name in seen and os.path.abspath(seen[name]) != os.path.abspath(path):
            clashes.append(f"{seen[name]} and {path} would write the same features ({name}); rename one")
        seen.setdefault(name, path)
    return clashes


def is_current(entry, path, kinds, root):
    """Whether `entry` (videos.jsonl) covers `path` as it is now, for all `kinds`, with its files present."""
    if entry is None or {key: entry.get(key) for key in ("source", "size", "mtime_ns")} != source_identity(path):
        return False
    if not set(kinds) <= set(entry.get("kinds", ())):
        return False
    return all(os.path.isfile(os.path.join(feature_folder(root, kind), f"{fid}.npy"))
               for kind in kinds for fid in entry["ids"])


def check_videos(paths, root, kinds, allow_variable_frame_rate=False):
    """{path: decode.VideoInfo} of the videos of `paths` still to extract under `root` (those not
    extracted there already for `kinds`), every one probed and checked. Reads only, and needs no
    network: a caller checks before it builds the extractor. Every bad video (unreadable, cut short,
    no audio track for the audio features, too short, a variable frame rate unless allowed) and
    every name clash is listed in one VideoInputError."""
    problems = name_clashes(paths)
    done = records.read_videos(root)
    infos = {}
    for path in paths:
        if path in infos or is_current(done.get(video_name(path)), path, kinds, root):
            continue
        try:
            info = decode.probe(path)
        except decode.VideoInputError as error:
            problems.append(str(error))
            continue
        found = decode.video_problems(info, need_audio=bool(set(AUDIO_KINDS) & set(kinds)),
                                      allow_variable_frame_rate=allow_variable_frame_rate)
        if found:
            problems.append(f"{path}: {'; '.join(found)}")
        else:
            infos[path] = info
    if problems:
        # every one is listed, however many: each must be fixed or left out before a rerun
        raise decode.VideoInputError(f"{len(problems)} problem(s) among {len(paths)} video(s); nothing was "
                                     f"extracted (fix or leave out each one):\n{bulleted(problems, len(problems))}")
    return infos


def say(text):
    """Print one progress line now: logs written to a file are block-buffered."""
    print(text, flush=True)


def extract_videos(extractor, paths, root, allow_variable_frame_rate=False, progress=None, log=say, checked=None):
    """Features of every video in `paths` under `root` (official layout); returns {name: entry}.

    Every file is probed and checked first (`check_videos`), so bad ones stop the run, all named
    in one error, before any network runs or anything is written; so do feature folders made with
    other settings. Videos already done with the same source file and settings are skipped
    (resume, cache). checked: what `check_videos` returned for these arguments, so the caller that
    checked before building the extractor does not probe every file twice. With a progress bar
    (progress True, or None on a terminal) the bar shows the videos; without one (a log file), a
    line says each finished video and, at most every PROGRESS_LINE_SECONDS, a finished window.
    """
    infos = check_videos(paths, root, extractor.kinds, allow_variable_frame_rate) if checked is None else checked
    folders = {kind: feature_folder(root, kind) for kind in extractor.kinds}
    for kind, folder in folders.items():   # every folder compared before any is made
        records.check_folder(folder, extractor.record(kind))
    for kind, folder in folders.items():
        records.claim_folder(folder, extractor.record(kind))
    done = records.read_videos(root)
    if len(infos) < len(paths):
        log(f"{len(paths) - len(infos)} video(s) already extracted with these settings in {root}: reused")
    entries = {video_name(path): done[video_name(path)] for path in paths if path not in infos}
    shown = sys.stderr.isatty() if progress is None else progress   # auto: on a terminal only, as engine/loops.py
    bar = tqdm(infos.items(), desc="extracting", unit="video", disable=not (shown and infos))
    last_line = time.monotonic()

    def window_line(path):
        def report(number, windows, seconds):
            nonlocal last_line
            if number < len(windows) and time.monotonic() - last_line >= PROGRESS_LINE_SECONDS:
                window = windows[number - 1]
                log(f"{path}: window {number}/{len(windows)} ({window.start}-"
                    f"{window.start + WINDOW_SECONDS - window.padded} s) done, {seconds:.1f} s")
                last_line = time.monotonic()
        return report

    for number, (path, info) in enumerate(bar, 1):
        name = video_name(path)
        bar.set_postfix_str(name)
        started = time.perf_counter()
        windows, features = extractor.extract(info, on_window=None if shown else window_line(path))
        ids = window_ids(name, windows)
        for kind, array in features.items():
            folder = feature_folder(root, kind)
            for fid, window_features in zip(ids, array):
                save_array(window_features, os.path.join(folder, f"{fid}.npy"))
        plan = describe_plan(info.duration, windows)
        if not shown:
            log(f"{path}: {plan}; done in {time.perf_counter() - started:.1f} s (video {number}/{len(infos)})")
            last_line = time.monotonic()
        elif windows[-1].padded or windows[-1].keep_from or len(windows) > 1:
            log(f"{path}: {plan}")
        entry = {"video": name, **source_identity(path), "kinds": list(extractor.kinds), "info": info.to_dict(),
                 "windows": [w.to_dict() for w in windows], "ids": ids, "plan": plan}
        records.append_video(root, entry)
        entries[name] = entry
    return entries
