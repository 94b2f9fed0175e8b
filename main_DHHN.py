"""DHHN for weakly-supervised audio-visual video parsing on LLP: the command-line entry point.

Parses arguments, resolves them into the run's Config (config.py), seeds, and dispatches to one of
the modes (modes/); nothing else.
Flag names of the original release are kept so existing scripts keep working.
"""
import argparse
import sys

import engine
from avvp_data.datasets import DATASETS
from avvp_data.llp import EVAL_AUDIO_2020_CSV
from config import EVAL_AUDIO_VERSIONS, MODEL_ALIASES, flag_modes_help, resolve_config
from dataloader import OFFICIAL_LAYOUT
from engine.optimization import OPTIMIZERS, SCHEDULERS
from modes.common import exclusive_run
from modes.estimate_labels import run_estimate_labels
from modes.evaluate import run_evaluate
from modes.train import run_retrain, run_train
from nets.han_baseline import HAN_UPDATES
from recipes import RECIPES
from recipes.base import WEAK_LOSSES
from utils.errors import UserError
from utils.progress import HEARTBEAT_SECONDS
from utils.runtime import print_warnings_plainly, set_seed, termination_as_interrupt

MODES = {
    "train": run_train,
    "retrain": run_retrain,
    "val": run_evaluate,
    "test": run_evaluate,
    "estimate_labels": run_estimate_labels,
}
DEFAULT_MODEL_SAVE_DIR = "models/"
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


class HelpFormatter(argparse.HelpFormatter):
    """Each default shown once: appended as "(default: X)" unless the help already says it, the
    flag has no default of its own (None: the published value of --model, or filled from
    --llp_root), or it is an on/off switch, whose help says what it does."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or "default" in text
                or action.default in (None, "", argparse.SUPPRESS) or not action.option_strings):
            return text
        return f"{text} (default: {action.default})"


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="DHHN (ACM MM 2022) / HAN (ECCV 2020) for audio-visual video parsing on LLP",
        formatter_class=HelpFormatter)
    data = parser.add_argument_group("data (published flag names)")
    data.add_argument("--dataset", default="llp", choices=tuple(DATASETS),
                      help="llp: LLP, 10-s videos (as published); lfav: LFAV, long videos of any length, its own "
                           "labels, metrics and selection rule (PROTOCOL.md §16; train/val/test)")
    data.add_argument("--lfav_root", default=None,
                      help="--dataset lfav: folder holding the release's LFAV_dataset/ and feats/{"
                           "audio-feat-vggish-align,visual-feat-res18-align,visual-feat-r2plus1d-align}/ "
                           "(default: the current folder); --audio_dir/--video_dir/--st_dir override the folders")
    data.add_argument("--llp_root", default="",
                      help="folder in the official layout (data/AVVP_*.csv, feats/{vggish,res152,r2plus1d_18}/); "
                           "fills every data flag below that is not given (default: the current folder)")
    for flag, help_text in DATA_FLAG_HELP.items():
        data.add_argument(f"--{flag}", default=None, help=f"{help_text} (default: <llp_root>/{OFFICIAL_LAYOUT[flag]})")
    data.add_argument("--classes", default=None, metavar="FILE",
                      help="your own class list: one name per line, in the order of the model's class axis, as "
                           "the label and eval files name them (default: the dataset's own, LLP's 25 or LFAV's 35; "
                           "docs/OWN_VIDEOS.md)")
    data.add_argument("--feature_names", default="youtube_id", choices=("youtube_id", "filename"),
                      help="how a video's feature files are named: youtube_id, the first 11 characters of its "
                           "filename (LLP, as published); filename, the whole filename (your own clips, as "
                           "extract_features.py names them)")
    data.add_argument("--eval_audio_version", default="current", choices=tuple(EVAL_AUDIO_VERSIONS),
                      help="which copy of the audio truth scores when --eval_audio_csv is not given: current "
                           "(corrected upstream in 2024) or 2020 (<llp_root>/data/" + EVAL_AUDIO_2020_CSV +
                           ", the copy the published numbers were scored with; scripts/download_llp.py fetches it)")
    data.add_argument("--feature_cache", default=None,
                      help="folder of packed feature arrays reused across runs (default: .packed_cache beside the "
                           "feature folders); 'none' disables it")
    data.add_argument("--frame_dtype", default="float32", choices=("float32", "float16"),
                      help="storage precision of the ResNet frame features in memory (float16 halves their size)")
    data.add_argument("--audio_pseudo_dir", "--a_pseudo_data_dir", dest="audio_pseudo_dir", default=None,
                      help="audio segment pseudo-labels, <youtube id>.npy (10, 25) in {0, 1} (VALOR's "
                           "CLAP/segment_pseudo_labels); adds the segment loss pseudo_audio (PROTOCOL.md §13)")
    data.add_argument("--visual_pseudo_dir", "--v_pseudo_data_dir", dest="visual_pseudo_dir", default=None,
                      help="visual segment pseudo-labels (VALOR's CLIP/segment_pseudo_labels); adds "
                           "pseudo_visual")
    data.add_argument("--allow_random_weight_features", action="store_true",
                      help="use feature folders whose extraction record says random weights (a smoke test of "
                           "scripts/extract_features.py); refused otherwise")
    data.add_argument("--allow_split_overlap", action="store_true",
                      help="run although two of the train/val/test label files share videos (by filename or "
                           "YouTube id); refused otherwise, and recorded in the run's records")
    data.add_argument("--frame_pooling", default="load", choices=("load", "model"),
                      help="load: average the 8 frames of each segment once after loading (exact: the frame "
                           "projection is linear; 1/8 of the memory and projection compute); model: project "
                           "every frame, then average, as the release computes it")

    run = parser.add_argument_group("run")
    run.add_argument("--mode", default="train", choices=tuple(MODES), help="what to do")
    run.add_argument("--model", default="dhhn", choices=tuple(RECIPES) + tuple(MODEL_ALIASES),
                     help="; ".join([f"{name}: {recipe.help}" for name, recipe in RECIPES.items()]
                                    + [f"{alias}: {text}" for alias, (_, _, text) in MODEL_ALIASES.items()]))
    run.add_argument("--model_save_dir", default=DEFAULT_MODEL_SAVE_DIR, help="folder of checkpoints and run records")
    run.add_argument("--checkpoint", "--model_name", dest="checkpoint", default="DHHN",
                     help="name prefix of this run's checkpoints and records (--model_name: VALOR's name for it)")
    run.add_argument("--seed", type=int, default=1, help="random seed (PROTOCOL.md §7)")
    run.add_argument("--device", default="auto",
                     help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from <checkpoint>_last.pt")
    run.add_argument("--log-interval", dest="log_interval", type=int, default=50,
                     help="print the total training loss every N steps (0: never), as the release did")
    run.add_argument("--log_seconds", type=float, default=HEARTBEAT_SECONDS,
                     help="without progress bars (output to a file): a step line, and a line while a split "
                          "loads, at least this often")
    run.add_argument("--no-log", dest="no_log", action="store_true", help="do not write per-epoch JSON records")
    run.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                     help="tqdm progress bars: auto shows them on a terminal")
    run.add_argument("--unused_flags", default="refuse", choices=("refuse", "note"),
                     help="a given flag that does nothing in this --mode: refuse it, or note it in one line and go "
                          "on (the shell scripts, which pass their extra flags to every step)")
    run.add_argument("--eval_batch_size", type=int, default=engine.EVAL_BATCH_SIZE,
                     help="videos per forward pass in evaluation")

    optim = parser.add_argument_group("optimisation (unset = published value for --model/--mode)")
    optim.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
                       help="dhhn 64, han 16")
    optim.add_argument("--epochs", type=int, default=None, help="dhhn train 10, retrain 5; han 40")
    optim.add_argument("--lr", type=float, default=None, help="learning rate of the parsing network (3e-4)")
    optim.add_argument("--lr_audio_mgn", type=float, default=None,
                       help="audio MGN learning rate (train 2 x --lr, retrain --lr)")
    optim.add_argument("--lr_visual_mgn", type=float, default=None,
                       help="visual MGN learning rate (train 0.2 x --lr, retrain --lr)")
    optim.add_argument("--lr_step", type=int, default=10, help="StepLR step size in epochs")
    optim.add_argument("--lr_gamma", type=float, default=0.1, help="StepLR decay factor")
    optim.add_argument("--optimizer", default="adam", choices=tuple(OPTIMIZERS),
                       help="adam as published; adamw as VALOR trains (PROTOCOL.md §13)")
    optim.add_argument("--weight_decay", type=float, default=0.0, help="weight decay of the optimizer (VALOR: 1e-3)")
    optim.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (VALOR: 0.5)")
    optim.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
    optim.add_argument("--eps", type=float, default=1e-8, help="Adam epsilon")
    optim.add_argument("--scheduler", default="steplr", choices=SCHEDULERS,
                       help="steplr (--lr_step, --lr_gamma) as published; warm_up_cos_anneal: VALOR's linear warm-up "
                            "over --warm_up_epoch epochs, then a cosine down to --lr_min at the last epoch")
    optim.add_argument("--warm_up_epoch", type=int, default=5, help="warm-up epochs of warm_up_cos_anneal (VALOR: 10)")
    optim.add_argument("--lr_min", type=float, default=1e-6,
                       help="learning rate of the last epoch of warm_up_cos_anneal")
    optim.add_argument("--grad_norm", type=float, default=0.0,
                       help="clip each net's gradient norm to this before its step; 0: never, as published "
                            "(VALOR: 1.0)")
    optim.add_argument("--weak_loss", default=None, choices=tuple(WEAK_LOSSES),
                       help="video-level BCE terms: all (global, audio, visual: the HAN, MA and DHHN releases) or "
                            "global (VALOR's release); default all")
    optim.add_argument("--pseudo_weight", type=float, default=None,
                       help="weight of each segment pseudo-label term (default 1, as VALOR; needs --audio_pseudo_dir "
                            "or --visual_pseudo_dir)")

    network = parser.add_argument_group("network (unset = published value for --model; HAN and MA take VALOR's flags)")
    network.add_argument("--hidden_dim", type=int, default=None, help="han/ma: model width (512)")
    network.add_argument("--nhead", type=int, default=None, help="han/ma: attention heads (1; VALOR 8)")
    network.add_argument("--ff_dim", type=int, default=None, help="han/ma: feed-forward width (512; VALOR 1024)")
    network.add_argument("--num_layers", type=int, default=None, help="han/ma: HAN layers (1; VALOR++ 4)")
    network.add_argument("--han_update", default=None, choices=HAN_UPDATES,
                         help="han/ma: the visual update reads the layer's audio input (parallel, HAN release) or its "
                              "new audio output (sequential, VALOR release)")
    network.add_argument("--norm_where", default="post_norm", choices=("post_norm",),
                         help="VALOR's flag; only post_norm (the HAN layer as published, and VALOR's setting) exists")
    network.add_argument("--pseudo_mgn", action="store_true", default=None,
                         help="dhhn: the MGNs also learn the segment pseudo-labels of their modality")

    ablation = parser.add_argument_group("ablations (paper Table 2; all on as published)")
    ablation.add_argument("--no_hier_feat", dest="hier_feat", action="store_false",
                          help="F-H off: single temporal scale (k=1) only")
    ablation.add_argument("--no_hier_pred", dest="hier_pred", action="store_false",
                          help="P-H off: predict from the last hierarchical feature instead of averaging the scales")
    ablation.add_argument("--no_audio_mgn", dest="audio_mgn", action="store_false",
                          help="A-M off: no audio guiding network")
    ablation.add_argument("--no_visual_mgn", dest="visual_mgn", action="store_false",
                          help="V-M off: no visual guiding network")
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
                        help="flags from estimate_labels (.csv or .pkl), or a pickle in the published format")
    refine.add_argument("--refine_source", default=None,
                        choices=tuple(dict.fromkeys(role for recipe in RECIPES.values() for role in recipe.role_names)),
                        help="which selected checkpoint of --checkpoint judges the labels "
                             "(default: the model's own, dhhn and han overall, ma final)")
    refine.add_argument("--refine_out", default=None,
                        help="output prefix (default <model_save_dir>/<checkpoint>_refined_labels)")
    for action in parser._actions:   # the modes a flag acts in, from the one table that also refuses it
        if action.option_strings and action.help:
            action.help = flag_modes_help(action.dest) + action.help
    return parser


def given_flags(parser, args):
    """(dest, flag, value) of every setting that differs from the parser's default, in the parser's
    order, under its first long option string (e.g. ("rmse", "--no_rmse", False), ("lr", "--lr", 0.001))."""
    given = []
    for action in parser._actions:
        if action.dest in vars(args) and action.option_strings and getattr(args, action.dest) != action.default:
            flag = next(option for option in action.option_strings if option.startswith("--"))
            given.append((action.dest, flag, getattr(args, action.dest)))
    return tuple(given)


def main(args, parser=None):
    """Resolve the parsed flags into the run's frozen Config, seed, and run its mode."""
    print_warnings_plainly()
    try:
        config = resolve_config(args, given_flags(parser or get_args_parser(), args))
        set_seed(config.run.seed)
        with termination_as_interrupt(), exclusive_run(config):
            return MODES[config.run.mode](config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", EXIT_USER_ERROR))
    except KeyboardInterrupt:
        print(f"interrupted ({args.mode}); nothing of this step was completed", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    args_parser = get_args_parser()
    main(args_parser.parse_args(), args_parser)
