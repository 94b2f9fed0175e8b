"""The pretrained weight files of the three feature networks: where they come from, how they are
found offline (--weights_dir) and checked (docs/PROTOCOL.md §15).

Each torch.hub file's name carries the first 8 hex digits of its SHA-256; a file whose digest does
not start with them is refused, so a truncated download or another network's weights never make
features silently. The CLIP and CLAP files are published without a digest (Hugging Face): theirs
is recorded, not checked, and the loaders refuse a file without exactly the network's keys.
"""
import os
from dataclasses import dataclass

import torch

from extraction import clap_audio
from utils.errors import UsageError
from utils.io import file_sha256


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str
    what: str
    hashed_name: bool = True   # torch.hub's <name>-<first 8 hex digits of the SHA-256>.<ext>

    @property
    def sha256_prefix(self):
        """The digest's beginning the name promises, or "" (no promise: every digest starts with it)."""
        return self.name.rsplit("-", 1)[1].split(".")[0] if self.hashed_name else ""


# torchvision's ImageNet (V1) and Kinetics-400 weights, the ones the original scripts loaded;
# VGGish as ported from the TensorFlow release by the torchvggish package
WEIGHT_FILES = {
    "resnet152": WeightFile("resnet152-394f9c45.pth", "https://download.pytorch.org/models/resnet152-394f9c45.pth",
                            "ResNet152, ImageNet-1k (torchvision IMAGENET1K_V1)"),
    "r2plus1d_18": WeightFile("r2plus1d_18-91a641e6.pth", "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
                              "R(2+1)D-18, Kinetics-400 (torchvision KINETICS400_V1)"),
    "vggish": WeightFile("vggish-10086976.pth",
                         "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
                         "VGGish, AudioSet (torchvggish port of the TensorFlow release)"),
    "vggish_pca": WeightFile("vggish_pca_params-970ea276.pth",
                             "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
                             "vggish_pca_params-970ea276.pth",
                             "VGGish PCA parameters (only for --vggish_postprocess)"),
    # VALOR's CLIP and CLAP (PROTOCOL.md §15): published on Hugging Face without a digest
    "clip": WeightFile("clip-vit-large-patch14.bin",
                       "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/pytorch_model.bin",
                       "CLIP ViT-L/14 (openai/clip-vit-large-patch14, transformers' pytorch_model.bin)",
                       hashed_name=False),
    "clap": WeightFile(clap_audio.CHECKPOINT_NAME, clap_audio.CHECKPOINT_URL, clap_audio.CHECKPOINT_WHAT,
                       hashed_name=False),
}


def locate(key, weights_dir=None):
    """Path of the weight file `key` (of WEIGHT_FILES): in `weights_dir` when given (offline
    machines), else torch.hub's cache, downloaded there when missing. The digest is checked."""
    entry = WEIGHT_FILES[key]
    if weights_dir:
        path = os.path.join(weights_dir, entry.name)
        if not os.path.isfile(path):
            raise UsageError(f"--weights_dir {weights_dir}: no {entry.name} ({entry.what}); download it from "
                             f"{entry.url}")
    else:
        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        path = os.path.join(folder, entry.name)
        if not os.path.isfile(path):
            os.makedirs(folder, exist_ok=True)
            try:
                torch.hub.download_url_to_file(entry.url, path, hash_prefix=entry.sha256_prefix or None)
            except Exception as error:   # no network, refused, or a digest mismatch (torch raises plain errors)
                raise UsageError(f"cannot download {entry.name} ({entry.what}) from {entry.url}: {error}; on an "
                                 "offline machine put the file in a folder and pass --weights_dir") from None
    digest = file_sha256(path)
    if not digest.startswith(entry.sha256_prefix):
        raise UsageError(f"{path}: SHA-256 {digest[:16]}... does not start with {entry.sha256_prefix}, so it is not "
                         f"the published {entry.name}; download it again from {entry.url}")
    return path, digest


def load_state_dict(key, weights_dir=None):
    """(state dict, record of the file) of weight file `key`."""
    path, digest = locate(key, weights_dir)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return state_dict, {"file": WEIGHT_FILES[key].name, "sha256": digest, "what": WEIGHT_FILES[key].what}
