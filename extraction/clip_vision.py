"""CLIP frame features as VALOR made its `CLIP/features/<id>.npy` (10, 768) (docs/PROTOCOL.md §13, §15).

VALOR (Franklin905/VALOR, utils/clip_preprocess.py) ran Hugging Face transformers' `CLIPModel`
of `openai/clip-vit-large-patch14` in float32 on 10 of the 8-fps frames of a 10-s clip. This
module is that image path in the project's own code, without transformers:

- frames: the N frames of the window, of which 10 at `np.round(np.linspace(0, N - 1, 10))`
  (numpy rounds halves to even: N = 80 gives 0, 9, 18, 26, 35, 44, 53, 61, 70, 79);
- pixels: RGB -> float32 in [0, 1] -> 224 x 224 bilinear resize of that float tensor (aspect
  squashed, no crop, no antialias) -> CLIP's mean and std;
- network: the ViT-L/14 vision tower and the visual projection (`get_image_features`), each row
  then divided by its L2 norm.

`CLIPVisionTower` keeps the parameter names and shapes of the vision part of HF's CLIPModel, so
the published `pytorch_model.bin` loads unchanged through `load_clip_vision_weights`; the text
tower's entries in the same file are skipped on purpose. tests/test_clip_vision.py compares the
whole path with transformers 4.30.2, torch 1.12.1 and torchvision 0.13.1 (VALOR's pins) on
seeded random weights.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avvp_data.llp import NUM_SEGMENTS
from extraction.image_transforms import normalize, pixels_to_tensor, rgb_pixels
from utils.errors import UsageError, UserError

# the published weights: the whole CLIPModel (text tower included, about 1.71 GB in float32);
# their SHA-256 is not known here, so the key and shape check of `load_clip_vision_weights` is
# what refuses another network's file
CLIP_MODEL_ID = "openai/clip-vit-large-patch14"
CLIP_WEIGHTS_FILE = "pytorch_model.bin"
CLIP_WEIGHTS_URL = f"https://huggingface.co/{CLIP_MODEL_ID}/resolve/main/{CLIP_WEIGHTS_FILE}"
CLIP_SAFETENSORS_URL = f"https://huggingface.co/{CLIP_MODEL_ID}/resolve/main/model.safetensors"
CLIP_WEIGHTS_SHA256 = None

# the vision config of openai/clip-vit-large-patch14 (its config.json; the rest are CLIPVisionConfig
# defaults: quick_gelu, layer_norm_eps 1e-5, 3 channels)
VIT_L14 = dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16, mlp_width=4096, projection_dim=768)
LAYER_NORM_EPS = 1e-5
QUICK_GELU_SCALE = 1.702      # x * sigmoid(1.702 x), the GELU approximation CLIP was trained with
IMAGE_CHANNELS = 3

# CLIP's pixel statistics: CLIPProcessor's image_mean / image_std, which VALOR passed to Normalize
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_IMAGE_SIZE = VIT_L14["image_size"]
CLIP_FRAMES = NUM_SEGMENTS    # one frame per 1-s segment
CLIP_FEATURE_DIM = VIT_L14["projection_dim"]

# HF's key layout: the vision tower under this prefix, the projection as one bias-free matrix
VISION_PREFIX = "vision_model."
PROJECTION_KEY = "visual_projection.weight"
# a buffer (0 .. tokens - 1) that older transformers, 4.30.2 among them, saved with the weights;
# the published file holds it, transformers 5 no longer does
POSITION_IDS_KEY = "vision_model.embeddings.position_ids"
# longest list of key names one error message spells out
LISTED_KEYS = 10


def quick_gelu(x):
    return x * torch.sigmoid(QUICK_GELU_SCALE * x)


class PatchTokens(nn.Module):
    """(B, 3, S, S) -> (B, 1 + (S / P)^2, D): the class token, then the patches row by row, each
    plus its learned position embedding. Names as HF's `embeddings`."""

    def __init__(self, image_size, patch_size, width):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.patch_embedding = nn.Conv2d(IMAGE_CHANNELS, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.position_embedding = nn.Embedding(1 + (image_size // patch_size) ** 2, width)
        nn.init.normal_(self.class_embedding, std=width ** -0.5)

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(len(pixel_values), 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class SelfAttention(nn.Module):
    """Multi-head self-attention, separate q/k/v projections with bias; over all tokens (the vision
    tower), or those `allowed` lets each query see (the text tower's causal and padding mask)."""

    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, tokens, allowed=None):
        batch, length, width = tokens.shape

        def split(projection):   # (B, T, D) -> (B, heads, T, D / heads)
            return projection(tokens).view(batch, length, self.heads, -1).transpose(1, 2)

        # softmax(q k^T / sqrt(head width)) v, the scaling HF applies to q before the product
        mixed = F.scaled_dot_product_attention(split(self.q_proj), split(self.k_proj), split(self.v_proj),
                                               attn_mask=allowed)
        return self.out_proj(mixed.transpose(1, 2).reshape(batch, length, width))


class FeedForward(nn.Module):
    def __init__(self, width, mlp_width):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_width)
        self.fc2 = nn.Linear(mlp_width, width)

    def forward(self, tokens):
        return self.fc2(quick_gelu(self.fc1(tokens)))


class EncoderLayer(nn.Module):
    """Pre-LN residual block: x + attn(LN1(x)), then x + mlp(LN2(x))."""

    def __init__(self, width, heads, mlp_width, eps):
        super().__init__()
        self.self_attn = SelfAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.mlp = FeedForward(width, mlp_width)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)

    def forward(self, tokens, allowed=None):
        tokens = tokens + self.self_attn(self.layer_norm1(tokens), allowed)
        return tokens + self.mlp(self.layer_norm2(tokens))


class Encoder(nn.Module):
    def __init__(self, layers, width, heads, mlp_width, eps):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(width, heads, mlp_width, eps) for _ in range(layers))

    def forward(self, tokens, allowed=None):
        for layer in self.layers:
            tokens = layer(tokens, allowed)
        return tokens


class VisionTransformer(nn.Module):
    """(B, 3, S, S) -> (B, D): the class token after the last layer and the final LayerNorm
    (HF's `pooler_output`). `pre_layrnorm` is spelt as in HF's key names."""

    def __init__(self, image_size, patch_size, width, layers, heads, mlp_width, eps):
        super().__init__()
        self.embeddings = PatchTokens(image_size, patch_size, width)
        self.pre_layrnorm = nn.LayerNorm(width, eps=eps)
        self.encoder = Encoder(layers, width, heads, mlp_width, eps)
        self.post_layernorm = nn.LayerNorm(width, eps=eps)

    def forward(self, pixel_values):
        tokens = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        return self.post_layernorm(tokens[:, 0])


class CLIPVisionTower(nn.Module):
    """CLIP's image encoder with the state-dict layout of HF CLIPModel's vision part:
    `vision_model.*` and `visual_projection.weight`. Defaults: ViT-L/14 (`VIT_L14`).

    forward: (B, 3, S, S) normalised pixels -> (B, projection_dim), what `get_image_features`
    returns; features: the same rows L2-normalised, what VALOR's CLIP/features files hold.
    No dropout or batch norm: train and eval mode compute the same.
    """

    def __init__(self, image_size=VIT_L14["image_size"], patch_size=VIT_L14["patch_size"], width=VIT_L14["width"],
                 layers=VIT_L14["layers"], heads=VIT_L14["heads"], mlp_width=VIT_L14["mlp_width"],
                 projection_dim=VIT_L14["projection_dim"], eps=LAYER_NORM_EPS):
        super().__init__()
        self.image_size = image_size
        self.feature_dim = projection_dim
        self.vision_model = VisionTransformer(image_size, patch_size, width, layers, heads, mlp_width, eps)
        self.visual_projection = nn.Linear(width, projection_dim, bias=False)

    def forward(self, pixel_values):
        expected = (IMAGE_CHANNELS, self.image_size, self.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            # the position embeddings fit one grid; other sizes would need interpolating them
            raise ValueError(f"pixel values {tuple(pixel_values.shape)}: expected (B, {', '.join(map(str, expected))})")
        return self.visual_projection(self.vision_model(pixel_values))

    def features(self, pixel_values):
        """(B, projection_dim) embeddings, each row divided by its L2 norm, as VALOR did before np.save
        (F.normalize divides by max(norm, 1e-12): the same for any row that is not zero)."""
        return F.normalize(self(pixel_values), dim=-1)


def clip_vit_l14():
    """ViT-L/14 randomly initialised; `CLIP_WEIGHTS_URL` loads into it with `load_clip_vision_weights`."""
    return CLIPVisionTower(**VIT_L14)


# ---------------------------------------------------------------- weights

def _named(keys):
    listed = sorted(keys)
    more = f" and {len(listed) - LISTED_KEYS} more" if len(listed) > LISTED_KEYS else ""
    return f"{listed[:LISTED_KEYS]}{more}"


def load_clip_part(model, part, position_ids_key, position_table_key, tower):
    """Load `part`, the entries of HF CLIPModel's state dict that belong to one tower (its
    position-ids buffer included, if the file has it), into `model`; returns it. A key missing,
    unexpected or misshapen raises UserError naming it (`tower`: "vision" or "text") and leaves
    the model unchanged; so do position ids that are not 0 .. tokens - 1, which would read the
    position table differently."""
    part = dict(part)
    position_ids = part.pop(position_ids_key, None)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(part), set(part) - set(expected)
    if missing or unexpected:
        raise UserError(f"CLIP state dict does not fit the {tower} tower: missing keys {_named(missing)}, "
                        f"unexpected keys {_named(unexpected)}")
    tensors = {key: torch.as_tensor(value) for key, value in part.items()}
    misshapen = [f"{key}: {tuple(tensors[key].shape)} instead of {tuple(target.shape)}"
                 for key, target in expected.items() if tensors[key].shape != target.shape]
    if misshapen:
        raise UserError(f"CLIP state dict does not fit the {tower} tower: " + "; ".join(misshapen))
    if position_ids is not None:
        tokens = expected[position_table_key].shape[0]
        value = torch.as_tensor(position_ids)
        if tuple(value.shape) != (1, tokens) or not torch.equal(value.long().cpu(), torch.arange(tokens)[None]):
            raise UserError(f"CLIP state dict: {position_ids_key} {tuple(value.shape)} is not 0 .. {tokens - 1}")
    model.load_state_dict(tensors)
    return model


def load_clip_vision_weights(model, state_dict):
    """Loads the vision part of HF CLIPModel's state dict (`pytorch_model.bin` or
    `model.safetensors` of openai/clip-vit-large-patch14, as read) into `model`, a CLIPVisionTower;
    returns the model. Keys outside `vision_model.*` and `visual_projection.weight` (the text
    tower, `text_projection.weight`, `logit_scale`) are ignored; a vision key missing, unexpected
    or misshapen raises UserError naming it, and leaves the model unchanged."""
    vision = {key: value for key, value in state_dict.items()
              if key.startswith(VISION_PREFIX) or key == PROJECTION_KEY}
    if not vision:
        raise UserError(f"CLIP state dict: no {VISION_PREFIX}* or {PROJECTION_KEY} keys, so not HF CLIPModel's "
                        f"(its keys start {_named(list(state_dict)[:LISTED_KEYS])})")
    return load_clip_part(model, vision, POSITION_IDS_KEY, "vision_model.embeddings.position_embedding.weight",
                          "vision")


def read_clip_state_dict(path):
    """The state dict of a downloaded CLIP weight file: `pytorch_model.bin` (torch.load, tensors
    only) or `model.safetensors` (needs the safetensors package)."""
    if str(path).endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UsageError(f"{path}: reading .safetensors needs `pip install safetensors`; or use "
                             f"{CLIP_WEIGHTS_FILE} ({CLIP_WEIGHTS_URL})") from None
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- frames and pixels

def clip_frame_indices(count, picks=CLIP_FRAMES):
    """Indices of the `picks` frames VALOR took from `count` frames: round(linspace(0, count - 1,
    picks)), halves to even. Fewer frames than picks repeat some."""
    if count < 1:
        raise ValueError("no frames to pick from")
    return [int(index) for index in np.round(np.linspace(0, count - 1, picks))]


def resize_bilinear(images, size=CLIP_IMAGE_SIZE):
    """(N, 3, H, W) float -> (N, 3, size, size): bilinear with half-pixel centres, no antialias.

    This is torchvision 0.13's `Resize((size, size))` on a float tensor: its tensor branch
    (functional_tensor.resize) turns antialias=None into False and, for a (h, w) size, calls
    exactly `torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False)` on the batched image, with no dtype cast for float32. Each output pixel
    samples the input at ((i + 0.5) * H / size - 0.5), clamped at 0 and computed in float32, from
    its two neighbours per axis; downscaling thus skips pixels instead of averaging them
    (torchvision >= 0.17 antialiases tensors by default, which changes the numbers)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def frame_rgb(frame):
    """(H, W, 3) uint8 RGB of a frame given as a PIL image (converted as `.convert('RGB')`) or as
    such an array."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != IMAGE_CHANNELS:
            raise ValueError(f"frame array {frame.shape} {frame.dtype}: expected (H, W, 3) uint8 RGB")
        return frame
    return rgb_pixels(frame)


def resized_frame(frame, size=CLIP_IMAGE_SIZE):
    """(3, size, size) float32 in [0, 1]: ToTensor of the frame, then the tensor resize. The
    order matters: the resize interpolates the float values, not 8-bit pixels."""
    return resize_bilinear(pixels_to_tensor(frame_rgb(frame)[None]), size)[0]


def clip_pixel_values(frames, size=CLIP_IMAGE_SIZE):
    """List of frames (PIL images or (H, W, 3) uint8) -> (N, 3, size, size) network input.
    Each frame is resized alone, so frames of different sizes may be mixed."""
    return normalize(torch.stack([resized_frame(frame, size) for frame in frames]), CLIP_MEAN, CLIP_STD)


@torch.no_grad()
def clip_window_features(model, frames, batch_size=CLIP_FRAMES):
    """(10, feature_dim) float32 numpy: VALOR's CLIP features of one 10-s window from its frames
    at 8 fps (normally 80; PIL images or (H, W, 3) uint8 arrays). A frame picked twice (fewer than
    10 frames, or one object held for several grid times) goes through the network once."""
    frames = list(frames)   # one object per frame, also for an (N, H, W, 3) array
    picked = [frames[index] for index in clip_frame_indices(len(frames))]
    position, unique = {}, []
    for frame in picked:
        if id(frame) not in position:
            position[id(frame)] = len(unique)
            unique.append(frame)
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(unique), batch_size):
        pixel_values = clip_pixel_values(unique[start:start + batch_size], model.image_size)
        rows.append(model.features(pixel_values.to(device)).float().cpu())
    features = torch.cat(rows)[[position[id(frame)] for frame in picked]]
    return features.numpy().astype(np.float32, copy=False)

