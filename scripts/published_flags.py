"""Print the flags of a published configuration (configs/<name>.flags) that act in one --mode, for
the shell scripts:

    python scripts/published_flags.py valor --mode test     # --model han ... --num_layers 1

Prints them on one line, separated by spaces (no flag value holds a space).
"""
import argparse
import sys

from config import PUBLISHED_CONFIGS_DIR, published_flags
from main_DHHN import EXIT_USER_ERROR
from main_DHHN import get_args_parser as main_args_parser
from utils.errors import UserError


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"a configuration of {PUBLISHED_CONFIGS_DIR} (valor, valor_plus, valor_plus_plus)")
    parser.add_argument("--mode", required=True, choices=("train", "retrain", "val", "test", "estimate_labels"),
                        help="keep the flags that act in this mode of main_DHHN.py")
    parser.add_argument("--leave_out", nargs="*", default=(), help="flags not to print (set by the caller)")
    return parser


def main(args):
    try:
        print(" ".join(published_flags(args.name, args.mode, main_args_parser(), args.leave_out)))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
