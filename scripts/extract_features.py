"""Extract LLP's three feature kinds from video files, with the original extraction's settings.

    python scripts/extract_features.py VIDEO_OR_FOLDER... --out_dir my_llp [--weights_dir weights/]

Writes, in the official layout under --out_dir: feats/vggish/<id>.npy (10, 128),
feats/res152/<id>.npy (80, 2048) and feats/r2plus1d_18/<id>.npy (10, 512), one per 10-s window
(<id> = the video's name, or <name>_<start>_<end> for the windows of a longer video), each
folder with an extraction.json record of every setting, and videos.jsonl (one line per finished
video; a rerun resumes after it). The settings and how they compare with the original scripts:
docs/OWN_VIDEOS.md, "Feature extraction beside the original". Needs: pip install -e ".[video]"
"""
import argparse
import os
import sys

from avvp_data.llp import YOUTUBE_ID_LENGTH
from extraction.extractor import (
    KINDS,
    OFFICIAL_KINDS,
    add_extraction_arguments,
    check_videos,
    extract_videos,
    extractor_from_args,
)
from modes.common import PROGRESS_SETTINGS
from utils.errors import UsageError, UserError
from utils.runtime import resolve_device

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv")
EXIT_USER_ERROR = 2


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files, or folders whose video files are all taken")
    parser.add_argument("--out_dir", required=True, help="root of the official layout to write (feats/...)")
    parser.add_argument("--kinds", nargs="+", default=list(OFFICIAL_KINDS), choices=KINDS,
                        help="feature kinds to extract: LLP's three by default; clap and clip make VALOR's "
                             "CLAP/ and CLIP/ folders (docs/OWN_VIDEOS.md); clap_windows the CLAP embeddings of "
                             "ten 1-s windows for zero-shot labels (docs/ZERO_SHOT.md)")
    add_extraction_arguments(parser)
    parser.add_argument("--progress", default="auto", choices=("auto", "on", "off"), help="progress bar")
    return parser


def video_files(arguments):
    """The video files named or found (sorted) in the folders named; each argument must give some."""
    paths = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = sorted(os.path.join(argument, entry) for entry in os.listdir(argument)
                           if entry.lower().endswith(VIDEO_EXTENSIONS))
            if not found:
                raise UsageError(f"{argument}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
            paths += found
        elif os.path.isfile(argument):
            paths.append(argument)
        else:
            raise UsageError(f"{argument}: no such file or folder")
    return paths


def llp_name_warning(entries):
    """LLP's loader finds a video's features by the first 11 characters of its name (as published):
    names that share them, or windows of longer videos, cannot be trained on as they are."""
    ids = [fid for entry in entries.values() for fid in entry["ids"]]
    prefixes = {}
    for fid in ids:
        prefixes.setdefault(fid[:YOUTUBE_ID_LENGTH], []).append(fid)
    shared = [names for names in prefixes.values() if len(names) > 1]
    if shared:
        return (f"{len(shared)} group(s) of feature ids share their first {YOUTUBE_ID_LENGTH} characters (e.g. "
                f"{', '.join(shared[0][:3])}); main_DHHN.py finds features by those characters, as LLP's loader did: "
                "train on these features with --feature_names filename (parse_video.py is not affected)")
    return None


def main(args):
    try:
        paths = video_files(args.videos)
        # every bad video is named before the networks are built (or their weights downloaded)
        checked = check_videos(paths, args.out_dir, args.kinds, args.allow_variable_frame_rate)
        extractor = extractor_from_args(args, resolve_device(args.device), kinds=args.kinds)
        if args.random_weights:
            print("warning: random weights (smoke test): these features carry no information", file=sys.stderr)
        progress = PROGRESS_SETTINGS[args.progress]
        entries = extract_videos(extractor, paths, args.out_dir, progress=progress, checked=checked)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    warning = llp_name_warning(entries)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    windows = sum(len(entry["ids"]) for entry in entries.values())
    print(f"{len(entries)} video(s), {windows} window(s) of {', '.join(extractor.kinds)} features in {args.out_dir}")
    return entries


if __name__ == "__main__":
    main(get_args_parser().parse_args())
