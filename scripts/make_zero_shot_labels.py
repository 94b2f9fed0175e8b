"""Write VALOR's zero-shot segment pseudo-labels for any dataset from CLIP/CLAP scores.

    python scripts/make_zero_shot_labels.py --label_csv data/AVVP_dataset_full.csv --modality clip \
        --embeddings data/CLIP/features --weights_dir weights/ --out data/CLIP/segment_pseudo_labels

Per video of --label_csv: per-segment scores (10, C) -- given (--logits DIR of <id>.npy) or
computed as exp(logit_scale) x cosine between the segment embeddings (--embeddings DIR of
<id>.npy (10, D), e.g. VALOR's CLIP/features) and the class prompts' text embeddings (from the
text towers with --weights_dir, seeded untrained ones with --random_weights, or --text_embeddings
FILE.npy (C, D) with --logit_scale) -- then `score > threshold[class]` for the video's weak-label
classes only. Thresholds: VALOR's (LLP's classes; the default there) or tuned on a labelled
validation split (--thresholds tuned --tune_on_val LABEL_CSV EVAL_CSV, never the test split).
Writes <out>/<id>.npy (10, C) int64 in {0, 1} (VALOR's segment_pseudo_labels layout) and
<out>/zero_shot_labels.json; with --truth_csv, prints precision / recall / F1. docs/ZERO_SHOT.md.
"""
import argparse
import math
import os
import sys

import numpy as np

from avvp_data.annotations import (
    looks_like_llp_filename,
    read_label_filenames,
    read_video_labels,
    segment_truth_with_coverage,
)
from avvp_data.datasets import dataset_classes, describe_classes
from avvp_data.llp import LABEL_TEST_CSV, NUM_SEGMENTS, YOUTUBE_ID_LENGTH
from extraction import zero_shot
from utils.errors import UsageError, UserError
from utils.io import atomic_write, atomic_write_json

EXIT_USER_ERROR = 2
RECORD_FILE = "zero_shot_labels.json"
# untrained towers of --random_weights: small, seeded (a smoke test, the scores mean nothing)
RANDOM_SEED = 0


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label_csv", required=True, help="weak labels of the videos to label (LLP format)")
    parser.add_argument("--modality", required=True, choices=zero_shot.MODALITIES,
                        help="clip: visual prompts and thresholds; clap: audio ones")
    parser.add_argument("--out", required=True, help="folder that receives <id>.npy (10, C) int64")
    parser.add_argument("--classes", default=None, help="class-list file (one name a line); default LLP's 25")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--logits", help="folder of per-video scores <id>.npy (10, C)")
    source.add_argument("--embeddings", help="folder of per-video segment embeddings <id>.npy (10, D)")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--weights_dir", help="folder with the published weights and tokenizer files "
                                            "(docs/ZERO_SHOT.md); needed with --embeddings unless another text "
                                            "source is given")
    text.add_argument("--random_weights", action="store_true", help="seeded untrained text towers (smoke test)")
    text.add_argument("--text_embeddings", help="(C, D) .npy of the prompts' text embeddings")
    parser.add_argument("--logit_scale", type=float, default=None,
                        help="log of the score scale with --text_embeddings (CLIP's published: log 100)")
    parser.add_argument("--thresholds", default=None, choices=("valor", "tuned"),
                        help="VALOR's per-class thresholds (LLP only; default there) or tuned on --tune_on_val")
    parser.add_argument("--tune_on_val", nargs=2, metavar=("LABEL_CSV", "EVAL_CSV"),
                        help="a labelled validation split: its weak labels and dense truth of this modality")
    parser.add_argument("--test_csv", default=None,
                        help=f"the run's test split, which tuning refuses (default: {LABEL_TEST_CSV} beside "
                             "--label_csv)")
    parser.add_argument("--truth_csv", default=None, help="dense truth (LLP eval format) to score the labels against")
    parser.add_argument("--device", default="cpu", help="device of the text towers")
    return parser


# ---------------------------------------------------------------- inputs

def feature_path(folder, filename):
    """<folder>/<filename>.npy, else <folder>/<first 11 characters>.npy (VALOR's names)."""
    for name in (filename, filename[:YOUTUBE_ID_LENGTH]):
        path = os.path.join(folder, name + ".npy")
        if os.path.isfile(path):
            return path
    return None


def output_name(filename):
    return filename[:YOUTUBE_ID_LENGTH] if looks_like_llp_filename(filename) else filename


def read_per_video(folder, filenames, flag):
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {folder}: no such folder")
    missing = [name for name in filenames if feature_path(folder, name) is None]
    if missing:
        raise UsageError(f"{flag} {folder}: no .npy for {len(missing)} video(s), e.g. {', '.join(missing[:3])}")
    arrays = []
    for name in filenames:
        path = feature_path(folder, name)
        array = np.load(path)
        if array.ndim != 2 or array.shape[0] != NUM_SEGMENTS:
            raise UsageError(f"{path}: shape {array.shape}, expected ({NUM_SEGMENTS}, N)")
        arrays.append(array.astype(np.float64))
    if len({array.shape for array in arrays}) > 1:
        raise UsageError(f"{flag} {folder}: the files differ in shape")
    return np.stack(arrays)


def text_source(args, classes, dim):
    """((C, D) text embeddings, log scale, description)."""
    prompts = zero_shot.class_prompts(classes, args.modality)
    if args.text_embeddings:
        if args.logit_scale is None:
            raise UsageError("--text_embeddings needs --logit_scale (the log of the score scale)")
        text = np.load(args.text_embeddings)
        if text.shape != (len(classes), dim):
            raise UsageError(f"--text_embeddings {args.text_embeddings}: shape {text.shape}, expected "
                             f"({len(classes)}, {dim}) for {describe_classes(classes)} and {dim}-d embeddings")
        return text, args.logit_scale, f"text embeddings {args.text_embeddings}"
    if not (args.weights_dir or args.random_weights):
        raise UsageError("--embeddings needs the prompts' text embeddings: --weights_dir, --random_weights or "
                         "--text_embeddings")
    import torch
    if args.modality == "clip":
        text, scale = _clip_text(args, prompts, dim, torch)
    else:
        text, scale = _clap_text(args, prompts, dim, torch)
    if args.logit_scale is not None:
        scale = args.logit_scale
    what = "random text tower (smoke test)" if args.random_weights else f"text tower of {args.weights_dir}"
    return text, scale, what


def _clip_text(args, prompts, dim, torch):
    from extraction import bpe_tokenizer, clip_text, clip_vision, weights
    if args.random_weights:
        torch.manual_seed(RANDOM_SEED)
        vocab = bpe_tokenizer.byte_vocab((), word_end=bpe_tokenizer.CLIP_WORD_END)
        vocab.update({bpe_tokenizer.CLIP_BOS: len(vocab), bpe_tokenizer.CLIP_EOS: len(vocab) + 1})
        tokenizer = bpe_tokenizer.CLIPTokenizer(vocab, [])
        model = clip_text.CLIPTextTower(vocab_size=len(vocab), width=64, layers=1, heads=2, mlp_width=128,
                                        projection_dim=dim)
        model.logit_scale.data.fill_(math.log(100.0))
    else:
        path, _ = weights.locate("clip", args.weights_dir)
        tokenizer = bpe_tokenizer.CLIPTokenizer.from_files(
            *bpe_tokenizer.tokenizer_files(args.weights_dir, clip_text.CLIP_TOKENIZER_PREFIX))
        model = clip_text.load_clip_text_weights(clip_text.clip_text_l14(), clip_vision.read_clip_state_dict(path))
    model = model.to(args.device).eval()
    text = clip_text.clip_text_embeddings(model, tokenizer, prompts)
    return _check_dim(text, dim), float(model.logit_scale.detach())


def _clap_text(args, prompts, dim, torch):
    from extraction import bpe_tokenizer, clap_text, weights
    if args.random_weights:
        torch.manual_seed(RANDOM_SEED)
        vocab = bpe_tokenizer.byte_vocab((bpe_tokenizer.ROBERTA_BOS, bpe_tokenizer.ROBERTA_PAD,
                                          bpe_tokenizer.ROBERTA_EOS, bpe_tokenizer.ROBERTA_UNK))
        tokenizer = bpe_tokenizer.RobertaTokenizer(vocab, [])
        branch = clap_text.CLAPTextBranch(vocab_size=len(vocab), width=64, layers=1, heads=2, mlp_width=128,
                                          max_positions=80)
        model = clap_text.CLAPZeroShot(branch, joint_dim=dim)
    else:
        path, _ = weights.locate("clap", args.weights_dir)
        tokenizer = bpe_tokenizer.RobertaTokenizer.from_files(
            *bpe_tokenizer.tokenizer_files(args.weights_dir, clap_text.ROBERTA_TOKENIZER_PREFIX))
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = clap_text.load_clap_zero_shot_weights(clap_text.CLAPZeroShot(), checkpoint)
    model = model.to(args.device).eval()
    text = clap_text.clap_text_embeddings(model, tokenizer, prompts)
    return _check_dim(text, dim), float(model.logit_scale_a.detach())


def _check_dim(text, dim):
    if text.shape[1] != dim:
        raise UsageError(f"the text embeddings are {text.shape[1]}-d, the segment embeddings {dim}-d: "
                         "not the same model's")
    return text


def cosine_logits(embeddings, text, log_scale):
    """(N, 10, C) exp(log_scale) x cosine, as logits_per_image / VALOR's CLAP logits."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
    text_unit = text / np.maximum(np.linalg.norm(text, axis=-1, keepdims=True), 1e-12)
    return math.exp(log_scale) * unit @ text_unit.T


class Scores:
    """Per-video scores for any list of filenames, from --logits or --embeddings."""

    def __init__(self, args, classes):
        self.args, self.classes, self.text, self.log_scale, self.what = args, classes, None, None, None

    def __call__(self, filenames):
        args = self.args
        if args.logits:
            logits = read_per_video(args.logits, filenames, "--logits")
            if logits.shape[2] != len(self.classes):
                raise UsageError(f"--logits {args.logits}: {logits.shape[2]} columns, {describe_classes(self.classes)}")
            self.what = f"logits {args.logits}"
            return logits
        embeddings = read_per_video(args.embeddings, filenames, "--embeddings")
        if self.text is None:
            self.text, self.log_scale, source = text_source(args, self.classes, embeddings.shape[2])
            self.what = f"embeddings {args.embeddings}, {source}, logit scale exp({self.log_scale:.4f})"
        return cosine_logits(embeddings, self.text, self.log_scale)


# ---------------------------------------------------------------- thresholds

def run_test_split(args):
    if args.test_csv:
        return args.test_csv
    beside = os.path.join(os.path.dirname(os.path.abspath(args.label_csv)), LABEL_TEST_CSV)
    return beside if os.path.isfile(beside) else None


def check_not_test(args, tune_label_csv, tune_eval_csv):
    """UsageError when the tuning split is the run's test split, or shares videos with it."""
    for path in (tune_label_csv, tune_eval_csv):
        if not os.path.isfile(path):
            raise UsageError(f"--tune_on_val {path}: no such file")
    if os.path.basename(tune_label_csv) == LABEL_TEST_CSV:
        raise UsageError(f"--tune_on_val {tune_label_csv}: that is LLP's test split; tune on the validation split")
    test = run_test_split(args)
    if test is None:
        return
    if not os.path.isfile(test):
        raise UsageError(f"--test_csv {test}: no such file")
    if os.path.samefile(test, tune_label_csv):
        raise UsageError(f"--tune_on_val {tune_label_csv}: that is the run's test split (--test_csv); tune on "
                         "the validation split")
    shared = set(read_label_filenames(test)) & set(read_label_filenames(tune_label_csv))
    if shared:
        raise UsageError(f"--tune_on_val {tune_label_csv}: {len(shared)} of its videos are in the test split "
                         f"{test} (e.g. {sorted(shared)[0]}); tune on videos the test does not score")


def dense_truth(eval_csv, filenames, classes):
    """((N, 10, C) truth, (N,) covered) of an eval CSV."""
    truth, covered = segment_truth_with_coverage(eval_csv, filenames, classes=classes)
    return truth.transpose(0, 2, 1), covered


def choose_thresholds(args, classes, scores):
    choice = args.thresholds or ("valor" if zero_shot.is_llp(classes) else "tuned")
    if choice == "valor":
        if args.tune_on_val:
            raise UsageError("--tune_on_val goes with --thresholds tuned")
        return zero_shot.valor_thresholds(classes, args.modality), "valor", None
    if not args.tune_on_val:
        raise UsageError("--thresholds tuned needs --tune_on_val LABEL_CSV EVAL_CSV (a labelled validation split)"
                         + ("" if zero_shot.is_llp(classes) else "; VALOR's thresholds exist for LLP's classes only"))
    label_csv, eval_csv = args.tune_on_val
    check_not_test(args, label_csv, eval_csv)
    filenames, weak = read_video_labels(label_csv, classes)
    truth, covered = dense_truth(eval_csv, filenames, classes)
    if not covered.any():
        raise UsageError(f"--tune_on_val {eval_csv}: no dense truth for the videos of {label_csv}")
    logits = scores([name for name, keep in zip(filenames, covered) if keep])
    fallback = zero_shot.valor_thresholds(classes, args.modality) if zero_shot.is_llp(classes) else None
    thresholds = zero_shot.tune_thresholds(logits, truth[covered], weak[covered], fallback=fallback)
    return thresholds, "tuned", {"label_csv": label_csv, "eval_csv": eval_csv, "videos": int(covered.sum())}


# ---------------------------------------------------------------- main

def percent(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


def main(args):
    classes = dataset_classes(args.classes)
    filenames, weak = read_video_labels(args.label_csv, classes)
    scores = Scores(args, classes)
    logits = scores(filenames)
    thresholds, choice, tuning = choose_thresholds(args, classes, scores)
    labels = zero_shot.segment_labels(logits, thresholds, weak)
    names = [output_name(name) for name in filenames]
    if len(set(names)) < len(names):
        names = list(filenames)          # 11-character names would collide: keep the whole names
    os.makedirs(args.out, exist_ok=True)
    for name, video_labels in zip(names, labels):
        atomic_write(os.path.join(args.out, name + ".npy"), lambda handle, a=video_labels: np.save(handle, a))
    record = {"modality": args.modality, "classes": list(classes), "prompts": zero_shot.class_prompts(classes,
              args.modality), "scores": scores.what, "thresholds": choice, "threshold_values": thresholds.tolist(),
              "tuning": tuning, "label_csv": args.label_csv, "videos": len(filenames)}
    message = (f"{len(filenames)} video(s) labelled in {args.out} ({args.modality}, {describe_classes(classes)}, "
               f"{choice} thresholds)")
    if args.truth_csv:
        truth, covered = dense_truth(args.truth_csv, filenames, classes)
        if not covered.any():
            raise UsageError(f"--truth_csv {args.truth_csv}: no rows for the videos of {args.label_csv}")
        quality = zero_shot.label_quality(labels[covered], truth[covered])
        record["quality"] = {"truth_csv": args.truth_csv, "videos": int(covered.sum()), **quality}
        message += (f"; against {args.truth_csv} ({int(covered.sum())} videos): precision "
                    f"{percent(quality['precision'])}, recall {percent(quality['recall'])}, "
                    f"F1 {percent(quality['f1'])}")
    atomic_write_json(record, os.path.join(args.out, RECORD_FILE))
    print(message)
    return record


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
