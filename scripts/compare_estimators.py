"""Which estimator's flags make the better refinement? On a synthetic LLP (planted truth), runs
DHHN_refinement.sh once per estimator (ESTIMATOR=ma, the published recipe, and ESTIMATOR=dhhn),
then prints the flags' precision / recall against the planted truth and the test table of DHHN
retrained on each (PROTOCOL.md §10, §12).

    python scripts/compare_estimators.py                      # the demo synthetic LLP
    python scripts/compare_estimators.py --root data/synthetic --save_dir models/estimators -- --epochs 3

Flags after `--` go to every step of both chains. Each chain's files go to
<save_dir>/<estimator>_chain_* (scripts/refinement_quality.py and the runs' summaries).
"""
import argparse
import json
import os
import subprocess
import sys

from reporting.tables import format_table
from utils.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ESTIMATORS = {"ma": "MA (the published estimator)", "dhhn": "DHHN's best-overall HCMN"}
DUAL_ROW = "DHHN dual (best-audio + best-visual)"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/synthetic", help="synthetic LLP root (made on first use)")
    parser.add_argument("--save_dir", default="models/estimators", help="where both chains write")
    parser.add_argument("flags", nargs="*", help="extra main_DHHN.py flags for every step (after --)")
    return parser


def run_chain(estimator, args):
    name = f"{estimator}_chain"
    env = {**os.environ, "LLP_ROOT": args.root, "SAVE_DIR": args.save_dir, "NAME": name, "ESTIMATOR": estimator}
    subprocess.run(["sh", os.path.join(REPO_ROOT, "DHHN_refinement.sh"), *args.flags], env=env, check=True)
    estimator_run = f"{name}_{'ma' if estimator == 'ma' else 'stage1'}"
    flags_csv = os.path.join(args.save_dir, f"{estimator_run}_refined_labels.csv")
    quality = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "refinement_quality.py"),
                              "--root", args.root, "--flags", flags_csv], check=True, capture_output=True, text=True)
    with open(os.path.join(args.save_dir, f"{name}_refined_test_summary.json")) as handle:
        table = json.load(handle)["tables"][DUAL_ROW]
    return quality.stdout.rstrip(), table


def main(args):
    if not os.path.isdir(os.path.join(args.root, "data")):
        subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "make_synthetic_llp.py"),
                        "--out", args.root], check=True)
    args.root, args.save_dir = os.path.abspath(args.root), os.path.abspath(args.save_dir)
    results = {estimator: run_chain(estimator, args) for estimator in ESTIMATORS}
    for estimator, (quality, table) in results.items():
        print(f"\nflags of {ESTIMATORS[estimator]} against the planted truth")
        print(quality)
        print(format_table(table, title=f"test: DHHN retrained on them, {DUAL_ROW}"))


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except (UserError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
