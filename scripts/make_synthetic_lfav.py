"""Write a synthetic LFAV (the release's label files, features and planted truth) for runs without
the real data (avvp_data/synthetic_lfav.py; PROTOCOL.md §16).

    python scripts/make_synthetic_lfav.py --out data/synthetic_lfav --size demo --seed 0

The result has the layout main_DHHN.py --dataset lfav --lfav_root <out> reads:
<out>/LFAV_dataset/{train,val,test}/*.csv and <out>/feats/{audio-feat-vggish-align,
visual-feat-res18-align,visual-feat-r2plus1d-align}/<id>.npy, plus <out>/synthetic_lfav_truth.npz.
Running it again with the same arguments is a no-op.
"""
import argparse
import sys

from avvp_data.synthetic_lfav import DEFAULT_MAX_LENGTH, DEFAULT_MIN_LENGTH, SIZES, generate_synthetic_lfav
from utils.errors import UsageError, UserError


def get_args_parser():
    parser = argparse.ArgumentParser(description="Generate a synthetic LFAV dataset with planted truth.")
    parser.add_argument("--out", default="data/synthetic_lfav",
                        help="root folder; receives LFAV_dataset/ and feats/ (default: data/synthetic_lfav)")
    parser.add_argument("--size", choices=sorted(SIZES), default="demo",
                        help="split sizes (train, val, test): "
                             + ", ".join(f"{name}={sizes}" for name, sizes in SIZES.items()))
    parser.add_argument("--n_train", type=int, default=None, help="override the number of train videos")
    parser.add_argument("--n_val", type=int, default=None, help="override the number of val videos")
    parser.add_argument("--n_test", type=int, default=None, help="override the number of test videos")
    parser.add_argument("--min_length", type=int, default=DEFAULT_MIN_LENGTH,
                        help=f"shortest video in 1-s snippets (default: {DEFAULT_MIN_LENGTH})")
    parser.add_argument("--max_length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"longest video in 1-s snippets (default: {DEFAULT_MAX_LENGTH})")
    parser.add_argument("--seed", type=int, default=0, help="everything generated is a function of it")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(args):
    sizes = dict(zip(("n_train", "n_val", "n_test"), SIZES[args.size]))
    sizes = {flag: default if getattr(args, flag) is None else getattr(args, flag) for flag, default in sizes.items()}
    problems = [f"--{flag} {count}: must be 0 or more" for flag, count in sizes.items() if count < 0]
    if args.min_length < 1 or args.max_length < args.min_length:
        problems.append(f"--min_length {args.min_length} --max_length {args.max_length}: need 1 <= min <= max")
    if problems:
        raise UsageError("; ".join(problems))
    summary = generate_synthetic_lfav(args.out, **sizes, min_length=args.min_length, max_length=args.max_length,
                                      seed=args.seed, progress=not args.no_progress and sys.stderr.isatty())
    state = "already complete, nothing written" if summary["skipped"] else f"written in {summary['seconds']:.1f} s"
    print(f"synthetic LFAV at {args.out}: train/val/test = {sizes['n_train']}/{sizes['n_val']}/{sizes['n_test']} "
          f"videos of {args.min_length}-{args.max_length} s, seed {args.seed}; {state}")
    return summary


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (UserError, FileExistsError) as error:   # FileExistsError: --out holds files of another origin
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
