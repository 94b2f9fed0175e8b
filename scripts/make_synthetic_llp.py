"""Write a synthetic LLP (annotations, features and planted truth) for runs without the real data.

    python scripts/make_synthetic_llp.py --out data/synthetic --size demo --seed 0

The result has the published layout: <out>/data/AVVP_*.csv and <out>/feats/{vggish,res152,
r2plus1d_18}/<id>.npy, plus <out>/data/synthetic_truth.npz (see avvp_data/synthetic_llp.py).
--modern_features adds VALOR's CLIP and CLAP features, <out>/CLIP/features/<id>.npy (10, 768) and
<out>/CLAP/features/<id>.npy (64, 768); scripts/make_pseudo_labels.py writes segment pseudo-labels.
Running it again with the same arguments is a no-op.
"""
import argparse
import sys

from avvp_data.synthetic_llp import FEATURE_DTYPES, SIZES, generate_synthetic_llp
from utils.errors import UsageError, UserError


def get_args_parser():
    parser = argparse.ArgumentParser(description="Generate a synthetic LLP dataset with planted truth.")
    parser.add_argument("--out", default="data/synthetic",
                        help="root folder; receives data/ and feats/ (default: data/synthetic)")
    parser.add_argument("--size", choices=sorted(SIZES), default="demo",
                        help="split sizes (train, val, test): "
                             + ", ".join(f"{name}={sizes}" for name, sizes in SIZES.items()))
    parser.add_argument("--n_train", type=int, default=None, help="override the number of train videos")
    parser.add_argument("--n_val", type=int, default=None, help="override the number of val videos")
    parser.add_argument("--n_test", type=int, default=None, help="override the number of test videos")
    parser.add_argument("--seed", type=int, default=0, help="everything generated is a function of it")
    parser.add_argument("--feature_dtype", choices=FEATURE_DTYPES, default="float32",
                        help="dtype of the .npy features (the real ones are float32)")
    parser.add_argument("--modern_features", action="store_true",
                        help="also write CLIP (10, 768) and CLAP (64, 768) features in VALOR's layout "
                             "(<out>/CLIP/features, <out>/CLAP/features)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(args):
    n_train, n_val, n_test = SIZES[args.size]
    n_train = n_train if args.n_train is None else args.n_train
    n_val = n_val if args.n_val is None else args.n_val
    n_test = n_test if args.n_test is None else args.n_test
    negative = [f"--{flag} {count}: must be 0 or more" for flag, count in
                (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)) if count < 0]
    if negative:
        raise UsageError("; ".join(negative))
    summary = generate_synthetic_llp(args.out, n_train, n_val, n_test, seed=args.seed,
                                     feature_dtype=args.feature_dtype,
                                     progress=not args.no_progress and sys.stderr.isatty(),
                                     modern_features=args.modern_features)
    fractions = summary["event_modality_fractions"]
    state = "already complete, nothing written" if summary["skipped"] else f"written in {summary['seconds']:.1f} s"
    feature_bytes = summary["feature_bytes"] + summary.get("modern_feature_bytes", 0)
    modern = " with CLIP/CLAP features" if summary.get("modern_features") else ""
    print(f"synthetic LLP at {args.out}: train/val/test = {n_train}/{n_val}/{n_test} videos, "
          f"seed {args.seed}, {summary['events']} events (audio-only {fractions['audio_only']:.0%}, "
          f"visual-only {fractions['visual_only']:.0%}, audio-visual {fractions['audio_visual']:.0%}), "
          f"{feature_bytes / 2**20:.0f} MiB of features{modern}; {state}")


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (UserError, FileExistsError) as error:   # FileExistsError: --out holds files of another origin
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
