"""Write noisy segment pseudo-labels of a synthetic LLP at a chosen precision and recall.

    python scripts/make_pseudo_labels.py --root data/synthetic --out data/pseudo_p90_r80 \
        --precision 0.9 --recall 0.8 --seed 0

Writes <out>/CLAP/segment_pseudo_labels/<id>.npy (audio) and <out>/CLIP/segment_pseudo_labels/
<id>.npy (visual), (10, 25) segment x class in {0, 1} as VALOR's, for every video of the three
splits, and <out>/synthetic_pseudo_labels.json with the parameters and the measured numbers. The
labels come from the planted truth (noise model: avvp_data/synthetic_llp.py, write_pseudo_labels), so
several noise levels can share one dataset; --out may be --root itself.
"""
import argparse
import sys

from avvp_data.synthetic_llp import write_pseudo_labels


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/synthetic",
                        help="a complete synthetic LLP (scripts/make_synthetic_llp.py; default: data/synthetic)")
    parser.add_argument("--out", required=True, help="folder that receives CLIP/ and CLAP/segment_pseudo_labels")
    parser.add_argument("--precision", type=float, required=True,
                        help="precision of the pseudo-labels, in (0, 1]; false positives are added to reach it")
    parser.add_argument("--recall", type=float, required=True,
                        help="recall, in [0, 1]: the probability that a true (segment, class) is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (the dataset has its own)")
    return parser


def main(args):
    measured = write_pseudo_labels(args.root, args.out, args.precision, args.recall, seed=args.seed)
    parts = [f"{modality} precision {_percent(row['precision'])}, recall {_percent(row['recall'])}"
             for modality, row in measured.items()]
    print(f"pseudo-labels of {args.root} at {args.out} (asked: precision {args.precision:.0%}, "
          f"recall {args.recall:.0%}, seed {args.seed}); measured: {'; '.join(parts)}")
    return measured


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
