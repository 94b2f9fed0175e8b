"""How much segment pseudo-labels help DHHN and HAN, and how that depends on their quality.

    python scripts/pseudo_label_study.py --seeds 1 2 3 [--levels 0.9:0.8 0.5:0.5] [--parallel 2]

On the synthetic LLP (data/synthetic, made on first use as by the shell scripts; another
--llp_root must be a synthetic one, whose planted truth the pseudo-labels are made from), for
each noise level precision:recall the pseudo-labels of scripts/make_pseudo_labels.py are written
to <out_dir>/pseudo_p<P>_r<R>/, then every configuration is trained and tested with every seed
by scripts/multi_seed.py: DHHN and HAN as published, DHHN with the pseudo-labels (its published
settings plus the segment loss, PROTOCOL.md §13) and VALOR (HAN with pseudo-labels under VALOR's
recipe, the flags of VALOR.sh). A configuration whose test summary exists for a seed is not run
again for it. Prints the method rows as mean ± std over the seeds and writes them to
<out_dir>/pseudo_label_study.{json,md}.
"""
import argparse
import os
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(SCRIPTS))
sys.path.insert(0, SCRIPTS)

import multi_seed  # noqa: E402
from utils.constants import VALOR_PSEUDO_LABELS_FOLDER, VALOR_SET_MODALITY  # noqa: E402
from utils.io import atomic_write_json, atomic_write_text  # noqa: E402
from utils.synthetic_llp import SIZES, generate_synthetic_llp, write_pseudo_labels  # noqa: E402

DEFAULT_ROOT = "data/synthetic"
# VALOR's published recipe (its scripts/train_valor.sh) on --model han; VALOR.sh passes the same
VALOR_FLAGS = ("--model", "han", "--weak_loss", "global", "--han_update", "sequential", "--hidden_dim", "512",
               "--nhead", "8", "--ff_dim", "1024", "--num_layers", "1", "--optimizer", "adamw",
               "--weight_decay", "1e-3", "--beta1", "0.5", "--eps", "1e-8", "--scheduler", "warm_up_cos_anneal",
               "--warm_up_epoch", "10", "--grad_norm", "1.0", "--lr", "1e-4", "--lr_min", "1e-6",
               "--epochs", "60", "--batch-size", "64")
# the table's columns: metric key -> title
COLUMNS = {"seg_audio": "Seg. A", "seg_visual": "Seg. V", "seg_av": "Seg. AV", "seg_type": "Seg. Type@AV",
           "seg_event": "Seg. Event@AV", "evt_type": "Eve. Type@AV"}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--levels", nargs="+", default=["0.9:0.8", "0.5:0.5"],
                        help="pseudo-label qualities, precision:recall each")
    parser.add_argument("--llp_root", default=None, help=f"a synthetic LLP (default {DEFAULT_ROOT}, demo size)")
    parser.add_argument("--out_dir", default="runs/pseudo_label_study", help="pseudo-labels, checkpoints, results")
    parser.add_argument("--parallel", type=int, default=1, help="seeds trained at once")
    parser.add_argument("--device", default="auto")
    return parser


def parse_level(text):
    try:
        precision, recall = (float(part) for part in text.split(":"))
    except ValueError:
        raise SystemExit(f"error: --levels {text}: expected precision:recall, e.g. 0.9:0.8") from None
    return precision, recall


def level_name(precision, recall):
    return f"p{round(100 * precision)}_r{round(100 * recall)}"


def pseudo_flags(folder):
    """--audio_pseudo_dir / --visual_pseudo_dir of a folder in VALOR's layout."""
    by_modality = {modality: os.path.join(folder, name, VALOR_PSEUDO_LABELS_FOLDER)
                   for name, modality in VALOR_SET_MODALITY.items()}
    return ["--audio_pseudo_dir", by_modality["audio"], "--visual_pseudo_dir", by_modality["visual"]]


def configurations(levels, out_dir):
    """[(row title, run name, main_DHHN flags)]: the baselines, then both methods per level."""
    configs = [("DHHN", "dhhn", ["--model", "dhhn"]), ("HAN", "han", ["--model", "han"])]
    for precision, recall in levels:
        name = level_name(precision, recall)
        folder = os.path.join(out_dir, f"pseudo_{name}")
        quality = f"pseudo-labels P={precision:.0%} R={recall:.0%}"
        configs.append((f"DHHN + {quality}", f"dhhn_{name}", ["--model", "dhhn", *pseudo_flags(folder)]))
        configs.append((f"VALOR (HAN + {quality})", f"valor_{name}", [*VALOR_FLAGS, *pseudo_flags(folder)]))
    return configs


def run_configuration(run_name, flags, args, root):
    """Train and test the seeds that have no test summary yet, then aggregate all seeds."""
    main_flags = ["--llp_root", root, "--model_save_dir", args.out_dir, "--checkpoint", run_name,
                  "--progress", "off", "--log-interval", "0", "--device", args.device, *flags]
    missing = [seed for seed in args.seeds
               if not os.path.isfile(multi_seed.summary_path(args.out_dir, run_name, seed))]
    if missing:
        try:
            multi_seed.main(["--seeds", *map(str, missing), "--parallel", str(args.parallel), "--", *main_flags])
        except SystemExit as stop:   # a failed seed: reported by multi_seed, the others still count
            if stop.code not in (0, 1, None):
                raise
    return multi_seed.main(["--seeds", *map(str, args.seeds), "--steps", "--", *main_flags])


def markdown_table(rows, seeds):
    lines = [f"| method (mean ± std over seeds {', '.join(map(str, seeds))}) | " + " | ".join(COLUMNS.values()) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for title, cells in rows.items():
        lines.append(f"| {title} | " + " | ".join(cells[key]["text"] for key in COLUMNS) + " |")
    return "\n".join(lines)


def main(args):
    levels = [parse_level(text) for text in args.levels]
    root = args.llp_root or DEFAULT_ROOT
    if args.llp_root is None:
        generate_synthetic_llp(root, *SIZES["demo"], seed=0)
    os.makedirs(args.out_dir, exist_ok=True)
    measured = {}
    for precision, recall in levels:
        folder = os.path.join(args.out_dir, f"pseudo_{level_name(precision, recall)}")
        measured[level_name(precision, recall)] = write_pseudo_labels(root, folder, precision, recall, seed=0)
    rows = {}
    for title, run_name, flags in configurations(levels, args.out_dir):
        result = run_configuration(run_name, flags, args, root)
        rows[title] = next(iter(result["rows"].values()))   # the method's own row (dual DHHN, HAN best)
    table = markdown_table(rows, args.seeds)
    print(table)
    atomic_write_json({"seeds": args.seeds, "levels": args.levels, "measured_pseudo_label_quality": measured,
                       "rows": rows}, os.path.join(args.out_dir, "pseudo_label_study.json"))
    atomic_write_text(table + "\n", os.path.join(args.out_dir, "pseudo_label_study.md"))
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
