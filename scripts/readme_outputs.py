"""Fill the README's quick-start output from a run of `sh DHHN_origin.sh`, so that it is never typed.

    python scripts/readme_outputs.py                          # run the quick start, rewrite README.md
    python scripts/readme_outputs.py --save_log run.log -- --model_save_dir /tmp/readme_run
    python scripts/readme_outputs.py --from_log run.log       # from a saved log of that run
    python scripts/readme_outputs.py --check --from_log run.log   # exit 1 where README.md differs

Two blocks of README.md are rewritten, each between its HTML comment markers
(`<!-- quickstart-output:begin -->` ... `<!-- quickstart-output:end -->`): `quickstart-output`
holds the headline test tables, `quickstart-details` an excerpt of the per-class table and the
modality confusion. Flags after `--` go to DHHN_origin.sh (and so to main_DHHN.py), e.g. a
--model_save_dir that keeps the run away from models/DHHN.
"""
import argparse
import difflib
import os
import subprocess
import sys
import time

from avvp_data.llp import CLASSES
from reporting.tables import MODALITY_STATES
from utils.errors import UserError
from utils.eval_metrics import LEVELS
from utils.io import atomic_write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_START = os.path.join(REPO_ROOT, "DHHN_origin.sh")
SPLIT_PREFIX = "test: "
PER_CLASS_PREFIX = SPLIT_PREFIX + "per-class F1 of "
CONFUSION_PREFIX = SPLIT_PREFIX + "modality confusion of "
# per-class rows shown before the "..." of the excerpt; the class-mean row closes it
EXCERPT_CLASSES = 2
# first word of the column header under a title: headline table, per-class table, confusion
TABLE_HEADER_STARTS = ("Audio", "Seg.", "truth")
BLOCKS = ("quickstart-output", "quickstart-details")
EXIT_DIFFERS = 1
EXIT_USER_ERROR = 2


class OutputError(UserError):
    """A log without the expected tables, or a README without the markers."""


def body_length(title):
    """Lines under a printed table's title: a header, then one row per level (headline
    table), per class plus the class mean (per-class table) or per modality state (confusion)."""
    if title.startswith(PER_CLASS_PREFIX):
        return 1 + len(CLASSES) + 1
    if title.startswith(CONFUSION_PREFIX):
        return 1 + len(MODALITY_STATES)
    return 1 + len(LEVELS)


def opens_a_table(lines, index):
    """Whether lines[index] is a table's title: the test step also prints phase lines under the
    same prefix ("test: loading labels ..."), and only a title is followed by a column header."""
    if not lines[index].startswith(SPLIT_PREFIX) or index + 1 >= len(lines):
        return False
    header = lines[index + 1].split()
    return bool(header) and header[0] in TABLE_HEADER_STARTS


def printed_test_tables(log_text):
    """{title: [title, lines...]} of every test table the log printed, in print order; a title
    printed again (a log of several runs) keeps its last table."""
    lines = log_text.splitlines()
    tables = {}
    index = 0
    while index < len(lines):
        title = lines[index]
        if not opens_a_table(lines, index):
            index += 1
            continue
        end = index + 1 + body_length(title)
        if end > len(lines):
            raise OutputError(f"the table {title!r} is cut short in the log")
        tables.pop(title, None)
        tables[title] = [line.rstrip() for line in lines[index:end]]
        index = end
    if not tables:
        raise OutputError("the log holds no test table; is it the output of sh DHHN_origin.sh?")
    return tables


def block_texts(tables):
    """{block name: the lines of its fenced text block} from the run's test tables."""
    headline = [line for title, table in tables.items()
                if not title.startswith((PER_CLASS_PREFIX, CONFUSION_PREFIX)) for line in table]
    per_class = [table for title, table in tables.items() if title.startswith(PER_CLASS_PREFIX)]
    confusion = [table for title, table in tables.items() if title.startswith(CONFUSION_PREFIX)]
    if not headline or not per_class or not confusion:
        raise OutputError("the log lacks the headline, per-class or confusion table of the test step")
    title_and_header, class_rows, mean_row = per_class[0][:2], per_class[0][2:-1], per_class[0][-1]
    details = title_and_header + class_rows[:EXCERPT_CLASSES] + ["..."] + [mean_row] + confusion[0]
    return {"quickstart-output": headline, "quickstart-details": details}


def fill_readme(readme_text, blocks):
    """README text with each block's lines, fenced as text, between its markers."""
    for name, lines in blocks.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        start, stop = readme_text.find(begin), readme_text.find(end)
        if start < 0 or stop < start:
            raise OutputError(f"README has no {begin} ... {end} markers")
        fenced = "\n".join(["```text", *lines, "```"])
        readme_text = readme_text[:start + len(begin)] + "\n" + fenced + "\n" + readme_text[stop:]
    return readme_text


def run_quick_start(extra_flags, save_log):
    """Runs sh DHHN_origin.sh, echoing its output as it comes; returns the output."""
    started = time.monotonic()
    process = subprocess.Popen(["sh", QUICK_START, *extra_flags], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    if process.wait() != 0:
        raise OutputError(f"sh DHHN_origin.sh failed (exit code {process.returncode}); README left as it is")
    log_text = "".join(lines)
    if save_log:
        atomic_write_text(log_text, save_log)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"the quick start took {minutes} min {seconds} s")
    return log_text


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from_log", default=None, help="a saved output of sh DHHN_origin.sh instead of a new run")
    parser.add_argument("--save_log", default=None, help="also write the new run's output there")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 (with a diff) where the README differs from the run")
    parser.add_argument("--readme", default=os.path.join(REPO_ROOT, "README.md"), help="the README to fill")
    parser.add_argument("flags", nargs="*", help="flags for DHHN_origin.sh (after --)")
    return parser


def main(args):
    """Returns the exit code: 0, or EXIT_DIFFERS when --check finds a difference."""
    if args.from_log and args.flags:
        raise OutputError("flags after -- go to a new run; --from_log reads a finished one")
    if args.from_log:
        with open(args.from_log) as handle:
            log_text = handle.read()
    else:
        log_text = run_quick_start(args.flags, args.save_log)
    with open(args.readme) as handle:
        current = handle.read()
    filled = fill_readme(current, block_texts(printed_test_tables(log_text)))
    if filled == current:
        print(f"{args.readme}: the blocks {', '.join(BLOCKS)} match the run")
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), filled.splitlines(True),
                                                   args.readme, "from the run"))
        return EXIT_DIFFERS
    atomic_write_text(filled, args.readme)
    print(f"{args.readme}: the blocks {', '.join(BLOCKS)} rewritten from the run")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(get_args_parser().parse_args()))
    except (OutputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
