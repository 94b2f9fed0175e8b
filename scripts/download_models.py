"""Install the models other codebases trained on the real LLP and published (recipes/releases.py;
PROTOCOL.md §15): VALOR, VALOR+ and VALOR++ from the Hugging Face model repository
NTUBarista/valor_trained_models, HAN's MMIL_Net.pt from its repository at a pinned commit.

    python scripts/download_models.py                      # all four into models/
    python scripts/download_models.py VALOR++ --models_dir models/
    python scripts/download_models.py --from DIR           # local copies (offline machines)

Each file goes where main_DHHN.py and parse_video.py find it (models/model_VALOR/checkpoint_best.pt,
as VALOR's README places it; models/MMIL_Net.pt, as HAN's), written atomically, and beside it
<file>.release.json records its source, its SHA-256 and the flags that build its network. Before
anything is installed, every file is loaded and checked: it must hold exactly the keys of its
network (missing and unexpected ones are named), with the sizes its configuration gives; HAN's
file must also have the git blob id its repository records. VALOR's files need huggingface_hub
(pip install -e ".[hf]"); --from DIR takes them from DIR in the same layout (DIR/model_VALOR/
checkpoint_best.pt, DIR/MMIL_Net.pt). Exit codes: 0 installed, 1 a file cannot be obtained, 2 a
file or a flag is refused.
"""
import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.request

import torch

from config import published_flags
from main_DHHN import get_args_parser as main_args_parser
from nets.convert import StateDictKeyError, han_from_release, release_han_settings
from recipes.releases import RELEASES, VALOR_MODELS_HF_REPO, record_path
from utils.errors import UsageError, UserError
from utils.io import atomic_write_bytes, atomic_write_json, file_sha256

INSTALL_HINT = 'pip install -e ".[hf]"'
EXIT_USAGE = 2


class SourceError(UserError):
    """A release file cannot be obtained (not in --from, huggingface_hub missing, download failed)."""
    exit_code = 1


def network_flags(release):
    """The main_DHHN.py flags that build the release's network (its configuration's test-mode flags;
    the recipe's published network when it has none)."""
    if release.config is None:
        return ["--model", release.model]
    return published_flags(release.config, "test", main_args_parser(), leave_out=("--seed",))


def expected_settings(release):
    """{hidden_dim, ff_dim, num_layers} its network has (nets.convert.release_han_settings' keys)."""
    flags = network_flags(release)
    values = {"hidden_dim": 512, "ff_dim": 512, "num_layers": 1}   # the HAN release's (PROTOCOL.md §11)
    for option in values:
        if f"--{option}" in flags:
            values[option] = int(flags[flags.index(f"--{option}") + 1])
    return values


def git_blob_id(path):
    """The id git gives a file's content: sha1 of "blob <size>\\0" + content."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(release, path):
    """Refuse (UsageError naming the file) a file that is not the release's network: not a state
    dict, other keys (named), other sizes, or, for HAN's, another git blob."""
    if release.git_blob and git_blob_id(path) != release.git_blob:
        raise UsageError(f"{path}: not {release.name}'s published file (its git blob id is {git_blob_id(path)}, "
                         f"the repository records {release.git_blob})")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:   # torch raises several types for files that are not checkpoints
        raise UsageError(f"{path}: not a checkpoint torch can read ({error})") from None
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(value) for value in state_dict.values()):
        raise UsageError(f"{path}: not a state dict of tensors, as {release.name}'s release saves its network")
    try:
        han_from_release(state_dict)
    except StateDictKeyError as error:
        raise UsageError(f"{path}: not {release.name}'s network: {error}") from None
    found, wanted = release_han_settings(state_dict), expected_settings(release)
    if found != wanted:
        raise UsageError(f"{path}: a network of {found}, {release.name}'s is {wanted}")


def obtain(release, source_dir, workdir):
    """A local path of the release's file: from `source_dir`, or downloaded into `workdir`."""
    if source_dir is not None:
        path = os.path.join(source_dir, release.path)
        if not os.path.isfile(path):
            raise SourceError(f"--from {source_dir}: no {release.path} ({release.name})")
        return path, f"--from {os.path.abspath(path)}"
    if release.hf_filename:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise SourceError(f"downloading {release.name} needs huggingface_hub: {INSTALL_HINT} "
                              "(or pass --from DIR)") from None
        try:
            path = hf_hub_download(repo_id=VALOR_MODELS_HF_REPO, filename=release.hf_filename)
        except Exception as error:   # the library raises many types (HTTP, offline, not found, disk)
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SourceError(f"{release.name}: cannot download {release.hf_filename} from the Hugging Face "
                              f"model repository {VALOR_MODELS_HF_REPO}: {reason}") from None
        return path, f"huggingface.co/{VALOR_MODELS_HF_REPO}/{release.hf_filename}"
    path = os.path.join(workdir, os.path.basename(release.path))
    try:
        with urllib.request.urlopen(release.url, timeout=60) as response, open(path, "wb") as handle:
            shutil.copyfileobj(response, handle)
    except OSError as error:
        raise SourceError(f"{release.name}: cannot download {release.url}: {error}") from None
    return path, release.url


def install(release, path, source, models_dir):
    """Copy the checked file into place (atomically) and write its record beside it."""
    target = os.path.join(models_dir, release.path)
    with open(path, "rb") as handle:
        atomic_write_bytes(handle.read(), target)
    record = {"release": release.name, "paper": release.paper, "source": source, "sha256": file_sha256(target),
              "installed": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": release.checkpoint,
              "network_flags": network_flags(release), "features": release.features}
    atomic_write_json(record, record_path(models_dir, release))
    return target, record


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # no choices=: argparse checks an empty nargs="*" default against them (Python < 3.12)
    parser.add_argument("names", nargs="*", default=[], help=f"which releases (default: all): {', '.join(RELEASES)}")
    parser.add_argument("--models_dir", default="models/", help="main_DHHN.py's --model_save_dir")
    parser.add_argument("--from", dest="source_dir", default=None,
                        help="take the files from this folder, in the installed layout, instead of downloading")
    return parser


def main(args):
    names = args.names or list(RELEASES)
    try:
        unknown = [name for name in names if name not in RELEASES]
        if unknown:
            raise UsageError(f"unknown release(s) {', '.join(unknown)}; known: {', '.join(RELEASES)}")
        with tempfile.TemporaryDirectory() as workdir:
            obtained = [(RELEASES[name], *obtain(RELEASES[name], args.source_dir, workdir)) for name in names]
            for release, path, _ in obtained:   # all checked before any is installed
                check_file(release, path)
            for release, path, source in obtained:
                target, record = install(release, path, source, args.models_dir)
                print(f"{release.name}: {target} (sha256 {record['sha256'][:16]}...; from {source})")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", EXIT_USAGE))
    return names


if __name__ == "__main__":
    main(get_args_parser().parse_args())
