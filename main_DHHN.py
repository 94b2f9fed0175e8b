"""DHHN for weakly-supervised audio-visual video parsing on LLP: the command-line entry point.

Parses arguments, seeds, and dispatches to one of the modes (modes/); nothing else.
Flag names of the original release are kept so existing scripts keep working.
"""
import argparse
import os
import sys

import engine
from dataloader import OFFICIAL_LAYOUT, LLPPaths
from modes.common import exclusive_run
from modes.estimate_labels import run_estimate_labels
from modes.evaluate import run_evaluate
from modes.train import run_retrain, run_train
from recipes import RECIPES
from utils.constants import EVAL_AUDIO_2020_CSV
from utils.errors import UsageError, UserError
from utils.runtime import MAX_SEED, set_seed, termination_as_interrupt

MODES = {
    "train": run_train,
    "retrain": run_retrain,
    "val": run_evaluate,
    "test": run_evaluate,
    "estimate_labels": run_estimate_labels,
}
DEFAULT_MODEL_SAVE_DIR = "models/"
# --eval_audio_version -> the file under <llp_root> (PROTOCOL.md §2)
EVAL_AUDIO_VERSIONS = {"current": OFFICIAL_LAYOUT["eval_audio_csv"], "2020": os.path.join("data", EVAL_AUDIO_2020_CSV)}
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130   # as a shell reports a Ctrl-C
DATA_FLAG_HELP = {
    "audio_dir": "VGGish features, <youtube id>.npy (10, 128)",
    "video_dir": "ResNet152 frame features, <youtube id>.npy (80, 2048)",
    "st_dir": "R(2+1)D snippet features, <youtube id>.npy (10, 512)",
    "label_train": "weak labels of the training split",
    "label_val": "weak labels of the validation split",
    "label_test": "weak labels of the test split",
    "eval_audio_csv": "audio segment truth (val + test)",
    "eval_visual_csv": "visual segment truth (val + test)",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except for on/off switches, whose help says what they do."""

    def _get_help_string(self, action):
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help
        return super()._get_help_string(action)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="DHHN (ACM MM 2022) / HAN (ECCV 2020) for audio-visual video parsing on LLP",
        formatter_class=HelpFormatter)
    data = parser.add_argument_group("data (published flag names)")
    data.add_argument("--llp_root", default="",
                      help="folder in the official layout (data/AVVP_*.csv, feats/{vggish,res152,r2plus1d_18}/); "
                           "fills every data flag below that is not given (default: the current folder)")
    for flag, help_text in DATA_FLAG_HELP.items():
        data.add_argument(f"--{flag}", default=None, help=f"{help_text} (default: <llp_root>/{OFFICIAL_LAYOUT[flag]})")
    data.add_argument("--eval_audio_version", default="current", choices=tuple(EVAL_AUDIO_VERSIONS),
                      help="which copy of the audio truth scores when --eval_audio_csv is not given: current "
                           "(corrected upstream in 2024) or 2020 (<llp_root>/data/" + EVAL_AUDIO_2020_CSV +
                           ", the copy the published numbers were scored with; scripts/download_llp.py fetches it)")
    data.add_argument("--feature_cache", default=None,
                      help="folder of packed feature arrays reused across runs (default: .packed_cache beside the feature folders); 'none' disables it")
    data.add_argument("--frame_dtype", default="float32", choices=("float32", "float16"),
                      help="storage precision of the ResNet frame features in memory (float16 halves their size)")
    data.add_argument("--frame_pooling", default="load", choices=("load", "model"),
                      help="load: average the 8 frames of each segment once after loading (exact: the frame "
                           "projection is linear; 1/8 of the memory and projection compute); model: project "
                           "every frame, then average, as the release computes it")

    run = parser.add_argument_group("run")
    run.add_argument("--mode", default="train", choices=tuple(MODES), help="what to do")
    run.add_argument("--model", default="dhhn", choices=tuple(RECIPES),
                     help="; ".join(f"{name}: {recipe.help}" for name, recipe in RECIPES.items()))
    run.add_argument("--model_save_dir", default=DEFAULT_MODEL_SAVE_DIR, help="folder of checkpoints and run records")
    run.add_argument("--checkpoint", default="DHHN", help="name prefix of this run's checkpoints and records")
    run.add_argument("--seed", type=int, default=1, help="random seed (PROTOCOL.md §7: 1)")
    run.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    run.add_argument("--resume", action="store_true", help="continue an interrupted train/retrain run from <checkpoint>_last.pt")
    run.add_argument("--log-interval", dest="log_interval", type=int, default=50,
                     help="print the total training loss every N steps (0: never), as the release did")
    run.add_argument("--no-log", dest="no_log", action="store_true", help="do not write per-epoch JSON records")
    run.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                     help="tqdm progress bars: auto shows them on a terminal")
    run.add_argument("--eval_batch_size", type=int, default=engine.EVAL_BATCH_SIZE,
                     help="videos per forward pass in evaluation")

    optim = parser.add_argument_group("optimisation (unset = published value for --model/--mode)")
    optim.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="dhhn 64, han 16")
    optim.add_argument("--epochs", type=int, default=None, help="dhhn train 10, retrain 5; han 40")
    optim.add_argument("--lr", type=float, default=None, help="learning rate of the parsing network (3e-4)")
    optim.add_argument("--lr_audio_mgn", type=float, default=None, help="audio MGN learning rate (train 2 x --lr, retrain --lr)")
    optim.add_argument("--lr_visual_mgn", type=float, default=None, help="visual MGN learning rate (train 0.2 x --lr, retrain --lr)")
    optim.add_argument("--lr_step", type=int, default=10, help="StepLR step size in epochs")
    optim.add_argument("--lr_gamma", type=float, default=0.1, help="StepLR decay factor")

    ablation = parser.add_argument_group("ablations (paper Table 2; all on as published)")
    ablation.add_argument("--no_hier_feat", dest="hier_feat", action="store_false",
                          help="F-H off: single temporal scale (k=1) only")
    ablation.add_argument("--no_hier_pred", dest="hier_pred", action="store_false",
                          help="P-H off: predict from the last hierarchical feature instead of averaging the scales")
    ablation.add_argument("--no_audio_mgn", dest="audio_mgn", action="store_false", help="A-M off: no audio guiding network")
    ablation.add_argument("--no_visual_mgn", dest="visual_mgn", action="store_false", help="V-M off: no visual guiding network")
    ablation.add_argument("--no_rmse", dest="rmse", action="store_false", help="L_rmse off: drop -MSE(a_prob, v_prob)")

    research = parser.add_argument_group("research outputs (val/test)")
    research.add_argument("--export_dir", default=None,
                          help="write predictions there: eval-format event CSVs per modality and the segment "
                               "probabilities (.npz) of every reported row, for re-scoring or ensembling")

    speed = parser.add_argument_group("speed (train/retrain; default off: the published float32 loop)")
    speed.add_argument("--cuda_graph", action="store_true",
                       help="capture the whole training step (forward, losses, backward, optimizer steps) as one "
                            "CUDA graph and replay it per batch; CUDA only; float32, dropout masks from another "
                            "random stream")
    speed.add_argument("--autocast", default="none", choices=("none", "bf16"),
                       help="bf16: bfloat16 autocast of the training forward passes (changes numerics; losses "
                            "and evaluation stay float32)")

    refine = parser.add_argument_group("label refinement (PROTOCOL.md §10)")
    refine.add_argument("--refined_labels", default=None,
                        help="retrain: flags from estimate_labels (.csv or .pkl), or a pickle in the published format")
    refine.add_argument("--refine_source", default=None,
                        choices=tuple(dict.fromkeys(role for recipe in RECIPES.values() for role in recipe.role_names)),
                        help="estimate_labels: which selected checkpoint of --checkpoint judges the labels "
                             "(default: the model's own, dhhn and han overall, ma final)")
    refine.add_argument("--refine_out", default=None,
                        help="estimate_labels: output prefix (default <model_save_dir>/<checkpoint>_refined_labels)")
    return parser


def resolve_data_paths(args):
    """Fill every data flag left unset from --llp_root's official layout (the audio truth by
    --eval_audio_version); explicit flags win."""
    if args.eval_audio_csv is None:
        args.eval_audio_csv = os.path.join(args.llp_root, EVAL_AUDIO_VERSIONS[args.eval_audio_version])
    elif args.eval_audio_version != "current":
        raise UsageError("--eval_audio_version picks the file under --llp_root; it cannot apply to an explicit "
                         "--eval_audio_csv (give one or the other)")
    official = LLPPaths.official(args.llp_root)
    for flag in OFFICIAL_LAYOUT:
        if getattr(args, flag) is None:
            setattr(args, flag, getattr(official, flag))
    return args


def check_numbers(args):
    """Flags whose values cannot work are refused before any work, naming the flag."""
    at_least_one = {"epochs": "--epochs", "batch_size": "--batch-size", "eval_batch_size": "--eval_batch_size",
                    "lr_step": "--lr_step"}
    problems = [f"{flag} {getattr(args, key)}: must be at least 1" for key, flag in at_least_one.items()
                if getattr(args, key) < 1]
    problems += [f"--{key} {getattr(args, key)}: must be positive"
                 for key in ("lr", "lr_audio_mgn", "lr_visual_mgn", "lr_gamma")
                 if getattr(args, key) is not None and not getattr(args, key) > 0]
    if not 0 <= args.seed <= MAX_SEED:
        problems.append(f"--seed {args.seed}: must be in 0..{MAX_SEED}")
    if args.log_interval < 0:
        problems.append(f"--log-interval {args.log_interval}: must be 0 (never) or more")
    if problems:
        raise UsageError("; ".join(problems))


def resolve_args(args):
    """Data paths from --llp_root, then the published values and ablation switches of --model;
    impossible values are refused."""
    resolve_data_paths(args)
    RECIPES[args.model].resolve_args(args)
    check_numbers(args)
    return args


def main(args):
    try:
        resolve_args(args)
        set_seed(args.seed)
        with termination_as_interrupt(), exclusive_run(args):
            return MODES[args.mode](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", EXIT_USER_ERROR))
    except KeyboardInterrupt:
        print(f"interrupted ({args.mode}); nothing of this step was completed", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
