"""Frame preprocessing of the two visual networks, as AVVP-ECCV20's extraction scripts did it.

Written with PIL alone (torchvision cannot be imported beside a CPU-only torch; see
extraction/visual_nets.py), step for step what torchvision.transforms does on a PIL image:

- ResNet-152 (scripts/extract_rgb_feat.py): pretrainedmodels' `utils.LoadTransformImage(model)`,
  i.e. RGB; Resize(floor(224 / 0.875) = 256) of the shorter side, bilinear; CenterCrop(224);
  ToTensor (range [0, 1]); Normalize with the ImageNet mean and std.
- R(2+1)D-18 (scripts/extract_3D_feat.py with scripts/utils.py): RGB; Resize((112, 112)),
  bilinear, ignoring the aspect ratio; ToTensor; Normalize with the Kinetics-400 mean and std;
  the 80 sampled frames of a video are then cut into 10 clips of 8 consecutive frames.
"""
import math

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

RESNET_CROP = 224
# pretrainedmodels' TransformImage: resize to floor(crop / scale) with scale 0.875, then crop
RESNET_SCALE = 0.875
RESNET_RESIZE = int(math.floor(RESNET_CROP / RESNET_SCALE))
R2PLUS1D_SIZE = 112
# frames per R(2+1)D clip: 80 frames of a 10-s video make one clip per 1-s segment
CLIP_FRAMES = 8


def resize_shorter_side(image, size):
    """PIL image whose shorter side is `size`, the longer int(size * long / short); bilinear.

    torchvision's Resize(int) on a PIL image: the same sizes (its _compute_resized_output_size),
    an image already of that size returned unchanged.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.BILINEAR)


def center_crop(image, size):
    """The central `size` x `size` of a PIL image at least that large, offsets rounded as
    torchvision's center_crop does (Python's round: halves go to the even neighbour)."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_tensor(image):
    """PIL image -> (3, H, W) float32 RGB in [0, 1] (torchvision's ToTensor: uint8 / 255)."""
    return pixels_to_tensor(rgb_pixels(image)[None])[0]


def rgb_pixels(image):
    """PIL image -> (H, W, 3) uint8 RGB (the original loaded every frame with .convert('RGB'))."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)   # a writable copy: torch refuses read-only buffers


def pixels_to_tensor(pixels):
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], as ToTensor computes it."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)


def normalize(tensor, mean, std):
    """(..., 3, H, W) -> (tensor - mean) / std per channel, a new tensor (as torchvision's Normalize)."""
    mean = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean) / std


def resnet_image(image):
    """The 224 x 224 PIL crop ResNet-152 sees of a frame."""
    return center_crop(resize_shorter_side(image, RESNET_RESIZE), RESNET_CROP)


def r2plus1d_image(image):
    """The 112 x 112 PIL image R(2+1)D sees of a frame (stretched, aspect ignored)."""
    size = (R2PLUS1D_SIZE, R2PLUS1D_SIZE)
    return image if image.size == size else image.resize(size, Image.BILINEAR)


# feature kind (avvp_data.llp.FEATURE_KINDS) -> (geometry, mean, std)
KIND_PREPROCESSING = {"frames": (resnet_image, IMAGENET_MEAN, IMAGENET_STD),
                      "snippets": (r2plus1d_image, KINETICS_MEAN, KINETICS_STD)}


def frame_pixels(kind, image):
    """(H, W, 3) uint8 pixels of a frame after the geometry of `kind`'s network: what the
    extraction holds per frame until its batch runs (4x smaller than the float input)."""
    return rgb_pixels(KIND_PREPROCESSING[kind][0](image))


def network_input(kind, pixels):
    """(N, H, W, 3) uint8 from `frame_pixels` -> (N, 3, H, W) normalised float32 input of `kind`'s network."""
    _, mean, std = KIND_PREPROCESSING[kind]
    return normalize(pixels_to_tensor(pixels), mean, std)


def resnet_input(images):
    """List of B PIL images (decoded frames) -> (B, 3, 224, 224) float32 ResNet-152 input."""
    return network_input("frames", np.stack([frame_pixels("frames", image) for image in images]))


def r2plus1d_input(images):
    """List of B PIL images -> (B, 3, 112, 112) float32 R(2+1)D frames, aspect ratio ignored."""
    return network_input("snippets", np.stack([frame_pixels("snippets", image) for image in images]))


def r2plus1d_clips(frames):
    """(N, 3, H, W) frames -> (N / 8, 3, 8, H, W) clips: frame i is time i % 8 of clip i // 8,
    as extract_3D_feat.py filled `images[i // 8, :, i % 8]`."""
    count, channels, height, width = frames.shape
    if count % CLIP_FRAMES:
        raise ValueError(f"{count} frames do not make whole clips of {CLIP_FRAMES}")
    clips = frames.reshape(count // CLIP_FRAMES, CLIP_FRAMES, channels, height, width)
    return clips.permute(0, 2, 1, 3, 4).contiguous()
