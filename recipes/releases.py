"""The models that other codebases trained on the real LLP and published, as this project loads them
(PROTOCOL.md §15): where each file comes from, where it goes under --model_save_dir, the recipe and
the published configuration (configs/<config>.flags) that build its network, and the features it
was trained on. scripts/download_models.py installs them; parse_video.py and main_DHHN.py read them
(main_DHHN.py through the recipes' release_files layouts)."""
import os
from dataclasses import dataclass

# VALOR's checkpoints (Lai et al., NeurIPS 2023), a Hugging Face *model* repository; VALOR's README
# places them at models/model_VALOR{,+,++}/checkpoint_best.pt
VALOR_MODELS_HF_REPO = "NTUBarista/valor_trained_models"
# HAN's (Tian et al., ECCV 2020) is tracked in its repository; pinned to the last commit (the file is
# unchanged since 0b28c1a, 2020-08-18), and checked by its git blob id, which that commit records
AVVP_RELEASE_COMMIT = "fde56118f2c2e7c19188dfefa2569a37b70054fe"
HAN_RELEASE_URL = f"https://raw.githubusercontent.com/YapengTian/AVVP-ECCV20/{AVVP_RELEASE_COMMIT}/models/MMIL_Net.pt"
HAN_RELEASE_GIT_BLOB = "ef441b4279b7272f6509d6c9f8bc6d522e9145ed"
# the record written beside each installed file: <file>.release.json
RECORD_SUFFIX = ".release.json"
# feature sets a release was trained on -> model input -> the extraction kind that makes it
# (extraction/extractor.py KIND_LAYOUT: VGGish, ResNet152, R(2+1)D-18, CLAP, CLIP)
FEATURE_SETS = {
    "official": {"audio": "audio", "frames": "frames", "snippets": "snippets"},
    "clip_clap": {"audio": "clap", "frames": "clip", "snippets": "snippets"},
}


@dataclass(frozen=True)
class Release:
    """One published model: `path` under --model_save_dir, its `checkpoint` name for main_DHHN.py
    (the file is found by the recipe's release_files layouts), where it comes from, and what builds
    and feeds it."""
    name: str
    path: str             # relative to --model_save_dir
    checkpoint: str       # main_DHHN.py --checkpoint (VALOR: --model_name)
    model: str            # main_DHHN.py --model (the recipe)
    config: str | None    # configs/<config>.flags: its network flags (None: the recipe's published network)
    features: str         # a key of FEATURE_SETS
    hf_filename: str | None = None   # in VALOR_MODELS_HF_REPO
    url: str | None = None
    git_blob: str | None = None      # the file's git blob id, where its repository records one
    paper: str = ""


RELEASES = {release.name: release for release in (
    Release("VALOR", os.path.join("model_VALOR", "checkpoint_best.pt"), "model_VALOR", "han", "valor", "official",
            hf_filename="model_VALOR/checkpoint_best.pt", paper="VALOR (Lai et al., NeurIPS 2023)"),
    Release("VALOR+", os.path.join("model_VALOR+", "checkpoint_best.pt"), "model_VALOR+", "han", "valor_plus",
            "official", hf_filename="model_VALOR+/checkpoint_best.pt", paper="VALOR+ (Lai et al., NeurIPS 2023)"),
    Release("VALOR++", os.path.join("model_VALOR++", "checkpoint_best.pt"), "model_VALOR++", "han",
            "valor_plus_plus", "clip_clap", hf_filename="model_VALOR++/checkpoint_best.pt",
            paper="VALOR++ (Lai et al., NeurIPS 2023)"),
    Release("HAN", "MMIL_Net.pt", "MMIL_Net", "han", None, "official", url=HAN_RELEASE_URL,
            git_blob=HAN_RELEASE_GIT_BLOB, paper="HAN (Tian et al., ECCV 2020)"),
)}


def record_path(model_save_dir, release):
    return os.path.join(model_save_dir, release.path + RECORD_SUFFIX)


def release_of_file(path):
    """The Release whose installed file `path` is (by its place under a --model_save_dir), or None."""
    normalized = os.path.normpath(path)
    for release in RELEASES.values():
        if normalized.endswith(os.sep + os.path.normpath(release.path)) or normalized == release.path:
            return release
    return None
