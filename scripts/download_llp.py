"""Fetch and verify the six LLP annotation files (PROTOCOL.md §2) and the two DHHN release files
the published numbers depend on (PROTOCOL.md §2, §10); explain how to get the features.

    python scripts/download_llp.py --out data/                      # from AVVP-ECCV20 and the DHHN release
    python scripts/download_llp.py --out data/ --from DIR           # copy from a local folder instead
    python scripts/download_llp.py --out data/ --check              # only verify what is there
    python scripts/download_llp.py --out data/ --annotations_only   # only the six annotation files

The two release files are kept as `need_to_change_MA.pkl` (the MA estimator's label-refinement
flags that DHHN retrained on, published as `need_to_change.pkl`) and `AVVP_eval_audio_2020.csv`
(the 2020 copy of the audio eval file that the published numbers were scored with); the current
`AVVP_eval_audio.csv` stays the default eval file. A --from folder may hold them under their kept
or their published names (avvp_data.llp.REPRODUCTION_SOURCE_NAMES).

Every file is checked against its sha256 (avvp_data/llp.py) and written atomically (temp file
+ rename); files already present with the right digest are left alone. A wrong digest is refused
(exit code 2, nothing written for that file); a file that cannot be obtained (not in the --from
folder, download failed) is exit code 1, as is --check finding a file missing or wrong. The
features (several GB on Google Drive) are not downloaded: the script prints the manual steps.
"""
import argparse
import hashlib
import os
import sys
import urllib.request
import warnings

from avvp_data.llp import (
    ANNOTATION_FILES,
    ANNOTATION_SHA256,
    DHHN_RELEASE_BASE_URL,
    EVAL_AUDIO_2020_CSV,
    FEATURE_KINDS,
    OLDER_ANNOTATION_SHA256,
    PUBLISHED_FLAGS_FILE,
    REPRODUCTION_FILES,
    REPRODUCTION_RELEASE_PATHS,
    REPRODUCTION_SHA256,
    REPRODUCTION_SOURCE_NAMES,
)
from utils.errors import UserError
from utils.io import atomic_write_bytes, file_sha256

BASE_URL = "https://raw.githubusercontent.com/YapengTian/AVVP-ECCV20/master/data/"
FEATURES_URL = "https://drive.google.com/file/d/10CeaI1G9uIyz5dKnd7XTeH9-qOehC7CL/view"
DOWNLOAD_TIMEOUT_S = 60
# every file this script knows, by the name it is kept under, with its expected sha256
EXPECTED_SHA256 = {**ANNOTATION_SHA256, **REPRODUCTION_SHA256}
ALL_FILES = ANNOTATION_FILES + REPRODUCTION_FILES
WHAT_IT_IS = {
    PUBLISHED_FLAGS_FILE: "the MA label-refinement flags DHHN retrained on, PROTOCOL.md §10",
    EVAL_AUDIO_2020_CSV: "the 2020 audio eval copy the published numbers were scored with, PROTOCOL.md §2",
}

OK, OLDER, MISSING, WRONG = "ok", "older copy", "missing", "wrong digest"


class ChecksumError(UserError):
    """A fetched file whose sha256 is neither the expected nor the known older one."""


def sha256_of_bytes(data):
    return hashlib.sha256(data).hexdigest()


def classify_digest(name, digest):
    """OK, OLDER or WRONG for the sha256 `digest` of file `name` (an annotation or release file)."""
    if digest == EXPECTED_SHA256[name]:
        return OK
    if digest == OLDER_ANNOTATION_SHA256.get(name):
        return OLDER
    return WRONG


def _older_copy_warning(name, where):
    warnings.warn(f"{where}: this is the older (2020) copy of {name}, with known defects "
                  f"(a class name in the filename column, a stray backtick); it is accepted, but "
                  f"the current file has sha256 {ANNOTATION_SHA256[name]}", stacklevel=3)


def wanted_files(annotations_only=False):
    """The names (as kept in --out) that a run fetches: the six annotation files, then the two
    release files unless `annotations_only`."""
    return ANNOTATION_FILES if annotations_only else ALL_FILES


def check_files(folder, names):
    """{name: OK | OLDER | MISSING | WRONG} for the files `names` in `folder`."""
    status = {}
    for name in names:
        path = os.path.join(folder, name)
        status[name] = classify_digest(name, file_sha256(path)) if os.path.isfile(path) else MISSING
    return status


def check_annotations(folder):
    """{name: OK | OLDER | MISSING | WRONG} for the six annotation files in `folder`."""
    return check_files(folder, ANNOTATION_FILES)


def source_names(name):
    """The names under which a --from folder may hold file `name`, in the order they are tried."""
    return REPRODUCTION_SOURCE_NAMES.get(name, (name,))


def _describe(name):
    names = source_names(name)
    shown = name if len(names) == 1 else f"{name} (or {' or '.join(names[1:])})"
    return f"{shown}, {WHAT_IT_IS[name]}" if name in WHAT_IT_IS else shown


def find_sources(names, source_dir):
    """{name: path} of each of `names` in the local folder `source_dir`, by the names of
    source_names(); FileNotFoundError naming every file that is not there, before anything is read."""
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"{source_dir}: folder not found (--from)")
    found, missing = {}, []
    for name in names:
        paths = [os.path.join(source_dir, candidate) for candidate in source_names(name)]
        present = [path for path in paths if os.path.isfile(path)]
        if present:
            found[name] = present[0]
        else:
            missing.append(name)
    if missing:
        hint = ("; pass --annotations_only to fetch only the six annotation files"
                if set(missing) & set(REPRODUCTION_FILES) else "")
        raise FileNotFoundError(f"not found in {source_dir} (--from): "
                                f"{'; '.join(_describe(name) for name in missing)}{hint}")
    return found


def url_of(name, base_url=BASE_URL, release_base_url=DHHN_RELEASE_BASE_URL):
    """Where file `name` is downloaded from: annotation files from `base_url` (AVVP-ECCV20/data/),
    the two release files from their path under `release_base_url` (the DHHN release)."""
    if name in REPRODUCTION_RELEASE_PATHS:
        return release_base_url + REPRODUCTION_RELEASE_PATHS[name]
    return base_url + name


def _download(name, url):
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except OSError as error:  # URLError, HTTPError, timeouts
        raise OSError(f"{name}: cannot download {url}: {error}") from error


def _read_file(path):
    with open(path, "rb") as handle:
        return handle.read()


def fetch_files(out_dir, names, source_dir=None, base_url=BASE_URL, release_base_url=DHHN_RELEASE_BASE_URL,
                log=print):
    """Put the verified files `names` in `out_dir`; returns {name: what was done}.

    A file already there with the expected digest is skipped. With `source_dir`, every file still
    needed is looked up there first, so that a missing one is reported before anything is written.
    Fetched bytes are verified before anything is written; a wrong digest raises ChecksumError
    naming the file, where it came from and both digests, and leaves `out_dir` untouched for that
    file.
    """
    os.makedirs(out_dir, exist_ok=True)
    done, needed = {}, []
    for name in names:
        target = os.path.join(out_dir, name)
        if os.path.isfile(target) and classify_digest(name, file_sha256(target)) == OK:
            done[name] = "present"
            log(f"{name}: present, sha256 ok")
        else:
            needed.append(name)
    sources = find_sources(needed, source_dir) if source_dir is not None and needed else {}
    for name in needed:
        if source_dir is not None:
            origin = sources[name]
            data = _read_file(origin)
        else:
            origin = url_of(name, base_url, release_base_url)
            data = _download(name, origin)
        digest = sha256_of_bytes(data)
        verdict = classify_digest(name, digest)
        if verdict == WRONG:
            raise ChecksumError(f"{name} from {origin}: sha256 {digest}, expected "
                                f"{EXPECTED_SHA256[name]}; nothing written")
        if verdict == OLDER:
            _older_copy_warning(name, origin)
        atomic_write_bytes(data, os.path.join(out_dir, name))
        done[name] = "copied" if source_dir is not None else "downloaded"
        log(f"{name}: {done[name]} from {origin}, sha256 {'ok' if verdict == OK else 'of the older copy'}")
    return done


def fetch_annotations(out_dir, source_dir=None, base_url=BASE_URL, log=print):
    """Put the six verified annotation files in `out_dir` (fetch_files); returns {name: what was done}."""
    return fetch_files(out_dir, ANNOTATION_FILES, source_dir=source_dir, base_url=base_url, log=log)


def fetch_all(out_dir, source_dir=None, base_url=BASE_URL, release_base_url=DHHN_RELEASE_BASE_URL,
              annotations_only=False, log=print):
    """The six annotation files and, unless `annotations_only`, the two release files (fetch_files)."""
    return fetch_files(out_dir, wanted_files(annotations_only), source_dir=source_dir, base_url=base_url,
                       release_base_url=release_base_url, log=log)


def reproduction_note(out_dir):
    """What the two release files are for."""
    return (f"To reproduce the published numbers (PROTOCOL.md §2, §10): score with "
            f"--eval_audio_csv {os.path.join(out_dir, EVAL_AUDIO_2020_CSV)} (the current "
            f"AVVP_eval_audio.csv stays the default), and retrain on the published flags with "
            f"--refined_labels {os.path.join(out_dir, PUBLISHED_FLAGS_FILE)}.")


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
    parser = argparse.ArgumentParser(
        description="Download and verify the LLP annotation files and the two DHHN release files "
                    f"({PUBLISHED_FLAGS_FILE}, {EVAL_AUDIO_2020_CSV}).")
    parser.add_argument("--out", default="data/", help="folder that receives the files (default: data/)")
    parser.add_argument("--from", dest="source_dir", default=None, metavar="DIR",
                        help="copy the files from this local folder instead of downloading them (the two release "
                             "files under their kept or published names)")
    parser.add_argument("--base_url", default=BASE_URL, help="where to download the annotation files from "
                                                             "(a mirror of AVVP-ECCV20/data/)")
    parser.add_argument("--release_base_url", default=DHHN_RELEASE_BASE_URL,
                        help="where to download the two release files from (a mirror of the DHHN release: "
                             + ", ".join(REPRODUCTION_RELEASE_PATHS.values()) + ")")
    parser.add_argument("--annotations_only", action="store_true",
                        help="only the six annotation files, not the two release files")
    parser.add_argument("--check", action="store_true",
                        help="only verify the files in --out; exit 1 if any is missing or wrong")
    return parser


def main(args):
    """0 when the files are in place and verified; 1 when one is missing (--check: or wrong) or
    cannot be obtained; 2 when a fetched file has a wrong digest (or --out cannot be written)."""
    names = wanted_files(args.annotations_only)
    if args.check:
        status = check_files(args.out, names)
        for name, verdict in status.items():
            print(f"{name}: {verdict}")
            if verdict == OLDER:
                _older_copy_warning(name, os.path.join(args.out, name))
        bad = [name for name, verdict in status.items() if verdict in (MISSING, WRONG)]
        if bad:
            print(f"error: {len(bad)} file(s) missing or with a wrong digest in {args.out}: "
                  f"{', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    try:
        fetch_files(args.out, names, source_dir=args.source_dir, base_url=args.base_url,
                    release_base_url=args.release_base_url)
    except UserError as error:  # ChecksumError; FileWriteError (an unwritable --out)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # not in --from, download failed (URLError is an OSError)
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not args.annotations_only:
        print(reproduction_note(args.out))
    print(feature_instructions())
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
