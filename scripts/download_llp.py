"""Fetch and verify the six LLP annotation files (PROTOCOL.md §2); explain how to get the features.

    python scripts/download_llp.py --out data/              # from the AVVP-ECCV20 repository
    python scripts/download_llp.py --out data/ --from DIR   # copy from a local folder instead
    python scripts/download_llp.py --out data/ --check      # only verify what is there

Every file is checked against the sha256 below and written atomically (temp file + rename);
files already present with the right digest are left alone. The features (several GB on
Google Drive) are not downloaded: the script prints the manual steps.
"""
import argparse
import hashlib
import os
import sys
import urllib.request
import warnings

# Scripts run as `python scripts/<name>.py` from the repository root; put the root on the path
# so that `utils` imports without installing the project.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.constants import (ANNOTATION_FILES, ANNOTATION_SHA256, FEATURE_KINDS,  # noqa: E402
                             OLDER_ANNOTATION_SHA256)
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write_bytes  # noqa: E402

BASE_URL = "https://raw.githubusercontent.com/YapengTian/AVVP-ECCV20/master/data/"
FEATURES_URL = "https://drive.google.com/file/d/10CeaI1G9uIyz5dKnd7XTeH9-qOehC7CL/view"
DOWNLOAD_TIMEOUT_S = 60

OK, OLDER, MISSING, WRONG = "ok", "older copy", "missing", "wrong digest"


class ChecksumError(UserError):
    """An annotation file whose sha256 is neither the expected nor the known older one."""


def sha256_of_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def classify_digest(name, digest):
    """OK, OLDER or WRONG for the sha256 `digest` of annotation file `name`."""
    if digest == ANNOTATION_SHA256[name]:
        return OK
    if digest == OLDER_ANNOTATION_SHA256.get(name):
        return OLDER
    return WRONG


def _older_copy_warning(name, where):
    warnings.warn(f"{where}: this is the older (2020) copy of {name}, with known defects "
                  f"(a class name in the filename column, a stray backtick); it is accepted, but "
                  f"the current file has sha256 {ANNOTATION_SHA256[name]}", stacklevel=3)


def check_annotations(folder):
    """{name: OK | OLDER | MISSING | WRONG} for the six annotation files in `folder`."""
    status = {}
    for name in ANNOTATION_FILES:
        path = os.path.join(folder, name)
        status[name] = classify_digest(name, sha256_of_file(path)) if os.path.isfile(path) else MISSING
    return status


def _read_source(name, source_dir, base_url):
    """Bytes of annotation file `name` from a local folder or from `base_url`."""
    if source_dir is not None:
        path = os.path.join(source_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not found (--from {source_dir})")
        with open(path, "rb") as handle:
            return handle.read(), path
    url = base_url + name
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read(), url
    except OSError as error:  # URLError, HTTPError, timeouts
        raise OSError(f"{name}: cannot download {url}: {error}") from error


def fetch_annotations(out_dir, source_dir=None, base_url=BASE_URL, log=print):
    """Put the six verified annotation files in `out_dir`; returns {name: what was done}.

    A file already there with the expected digest is skipped. Fetched bytes are verified before
    anything is written; a wrong digest raises ChecksumError naming the file and both digests and
    leaves `out_dir` untouched for that file.
    """
    os.makedirs(out_dir, exist_ok=True)
    done = {}
    for name in ANNOTATION_FILES:
        target = os.path.join(out_dir, name)
        if os.path.isfile(target) and classify_digest(name, sha256_of_file(target)) == OK:
            done[name] = "present"
            log(f"{name}: present, sha256 ok")
            continue
        data, origin = _read_source(name, source_dir, base_url)
        digest = sha256_of_bytes(data)
        verdict = classify_digest(name, digest)
        if verdict == WRONG:
            raise ChecksumError(f"{name} from {origin}: sha256 {digest}, expected "
                                f"{ANNOTATION_SHA256[name]}; nothing written")
        if verdict == OLDER:
            _older_copy_warning(name, origin)
        atomic_write_bytes(data, target)
        done[name] = "copied" if source_dir is not None else "downloaded"
        log(f"{name}: {done[name]} from {origin}, sha256 {'ok' if verdict == OK else 'of the older copy'}")
    return done


def feature_instructions(feats_dir="feats"):
    """The manual steps for the features, which live on Google Drive."""
    layout = "\n".join(f"    {feats_dir}/{folder}/<youtube id>.npy  {shape}"
                       for folder, shape in FEATURE_KINDS.values())
    return (f"Features (several GB) are not downloaded by this script:\n"
            f"  1. Open the Google Drive link of the AVVP-ECCV20 README (\"LLP Dataset & Features\"):\n"
            f"     {FEATURES_URL}\n"
            f"  2. Download the archive and unpack its \"feats\" folder so that you have\n{layout}\n"
            f"     (<youtube id> = the first 11 characters of the filename column, float32).\n"
            f"  3. Point --audio_dir/--video_dir/--st_dir at them, or set LLP_ROOT to the folder\n"
            f"     holding data/ and feats/ for the shell scripts (scripts/llp_paths.sh).\n"
            f"Without them, the synthetic LLP (scripts/make_synthetic_llp.py) is the default.")


def get_args_parser():
    parser = argparse.ArgumentParser(description="Download and verify the LLP annotation files.")
    parser.add_argument("--out", default="data/", help="folder that receives the six CSV files (default: data/)")
    parser.add_argument("--from", dest="source_dir", default=None, metavar="DIR",
                        help="copy the files from this local folder instead of downloading them")
    parser.add_argument("--base_url", default=BASE_URL, help="where to download from (a mirror of AVVP-ECCV20/data/)")
    parser.add_argument("--check", action="store_true", help="only verify the files in --out; exit 1 if any is missing or wrong")
    return parser


def main(args):
    """0 when the six files are in place and verified, 1 otherwise."""
    if args.check:
        status = check_annotations(args.out)
        for name, verdict in status.items():
            print(f"{name}: {verdict}")
            if verdict == OLDER:
                _older_copy_warning(name, os.path.join(args.out, name))
        bad = [name for name, verdict in status.items() if verdict in (MISSING, WRONG)]
        if bad:
            print(f"error: {len(bad)} annotation file(s) missing or with a wrong digest in {args.out}: "
                  f"{', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    try:
        fetch_annotations(args.out, source_dir=args.source_dir, base_url=args.base_url)
    except (ChecksumError, OSError) as error:  # URLError is an OSError
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(feature_instructions())
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
