"""VALOR's CLAP audio feature maps: laion_clap's HTSAT-tiny audio encoder (fusion model) written to
load the audio branch of `630k-fusion-best.pt` as it is (docs/PROTOCOL.md §15).

VALOR (utils/clap_preprocess.py, clap_utils.py; laion_clap 1.1.4) stores per 10-s clip the
(64, 768) map after HTSAT's final LayerNorm, before its pooling, class head and the CLAP
projection. With every clip exactly 10 s, laion's fusion input is four copies of one log-mel
spectrogram and no clip is "longer", so only the first copy reaches the patch embedding and the
attentional feature fusion (AFF) never runs; this module therefore takes the (T, 64) mel once:

    mel (B, 1001, 64) dB -> bn0 per mel bin -> bicubic to 1024 frames -> folded to a 256 x 256
    image (4 quarters of the clip stacked along frequency) -> 4x4 patches, 96 channels -> Swin
    stages (depths 2, 2, 6, 2; heads 4, 8, 16, 32; window 8; patch merging between) -> LayerNorm
    -> (B, 64 tokens of an 8 x 8 grid, 768) -> regrouped into VALOR's rows.

Row r = band * 32 + step of the result: band 0 covers the lower half of the mel bins, band 1 the
upper half, step 0..31 is time in order (about 0.31 s each); the mean over rows is laion's 768-d
`embedding`. Everything is parametric, so tests can run a small configuration.

laion_clap is not imported; tests/test_clap_audio.py holds its outputs on seeded random weights.

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = load_clap_audio_weights(htsat_tiny(), checkpoint).eval()
    maps = clap_feature_maps(model, [waveform_48k])       # (1, 64, 768) float32
"""
import torch
import torch.nn.functional as F
from torch import nn

from extraction import clap_mel

# The published weights (laion_clap's load_ckpt(model_id=2), which VALOR calls). Their SHA-256 was
# not known when this was written: record the digest of what is downloaded beside the features.
CHECKPOINT_NAME = "630k-fusion-best.pt"
CHECKPOINT_URL = "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-fusion-best.pt"
CHECKPOINT_SHA256 = None
CHECKPOINT_WHAT = "CLAP HTSAT-tiny + RoBERTa, feature fusion (aff_2d), LAION-Audio-630K (laion_clap 630k-fusion-best)"

# --- HTSAT-tiny as laion_clap's create_htsat_model builds it (clap_module/htsat.py) ---
IMAGE_SIZE = 256                    # the square image the folded mel becomes
PATCH_SIZE = 4                      # patch size = patch stride: no overlap, no padding
EMBED_DIM = 96
DEPTHS = (2, 2, 6, 2)
NUM_HEADS = (4, 8, 16, 32)
WINDOW_SIZE = 8
MLP_RATIO = 4.0
LAYER_NORM_EPS = 1e-5
BATCH_NORM_EPS = 1e-5
# tokens of different regions of a shifted window get this added before the softmax (Swin)
MASK_VALUE = -100.0

# The checkpoint stores the whole CLAP model as laion's training saved it ({"epoch", "name",
# "state_dict", optimizer state}, keys prefixed "module." by DistributedDataParallel; laion's
# load_ckpt strips the prefix); only the audio branch matters here.
CHECKPOINT_STATE_KEY = "state_dict"
PARALLEL_PREFIX = "module."
AUDIO_PREFIX = "audio_branch."
# parts of the audio branch that the feature map never passes through
UNUSED_AUDIO_PARTS = (
    "spectrogram_extractor.",       # the non-fusion model's own STFT and log-mel (torchlibrosa):
    "logmel_extractor.",            # the fusion input is computed outside the network (clap_mel)
    "patch_embed.mel_conv2d.",      # the local branch and AFF of clips longer than 10 s
    "patch_embed.fusion_model.",
    "tscam_conv.",                  # the audio-tagging head after the map
    "head.",
)
# buffers that the geometry fixes; the checkpoint holds copies, which must agree
FIXED_BUFFER_SUFFIXES = ("attn.relative_position_index", "attn_mask")


# ---------------------------------------------------------------- Swin pieces

def relative_position_index(window):
    """(window^2, window^2) long: for tokens i, j of a window (row-major), the row of the bias
    table holding their offset (dh, dw), each in -(window-1)..window-1, as (dh + w - 1)(2w - 1) + dw + w - 1."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    d_rows = rows[:, None] - rows[None, :] + window - 1
    d_cols = cols[:, None] - cols[None, :] + window - 1
    return d_rows * (2 * window - 1) + d_cols


def partition_windows(x, window):
    """(B, H, W, C) -> (B * H/w * W/w, w, w, C), windows in row-major order per image."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)


def merge_windows(windows, window, height, width):
    """The inverse of partition_windows: (B * H/w * W/w, w, w, C) -> (B, H, W, C)."""
    channels = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def shifted_window_mask(height, width, window, shift):
    """(num_windows, w^2, w^2) float32: 0 between tokens that were neighbours before the cyclic
    shift, MASK_VALUE between tokens that the roll brought together from opposite edges."""
    def regions(size):
        labels = torch.zeros(size, dtype=torch.long)
        labels[size - window:] = 1
        labels[size - shift:] = 2
        return labels
    region = regions(height)[:, None] * 3 + regions(width)[None, :]
    region = partition_windows(region[None, :, :, None], window).reshape(-1, window * window)
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape).masked_fill(different, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per relative offset and
    head: (num_windows * B, w^2, C) -> the same."""

    def __init__(self, dim, window, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, windows, mask=None):
        """windows (N_w * B, w^2, C); mask (N_w, w^2, w^2) or None."""
        count, tokens, channels = windows.shape
        qkv = self.qkv(windows).reshape(count, tokens, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)         # each (N_w * B, heads, w^2, C / heads)
        scores = (query * self.scale) @ key.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        scores = scores + bias.reshape(tokens, tokens, self.num_heads).permute(2, 0, 1)
        if mask is not None:
            num_windows = mask.shape[0]
            scores = scores.reshape(-1, num_windows, self.num_heads, tokens, tokens) + mask[None, :, None]
            scores = scores.reshape(count, self.num_heads, tokens, tokens)
        attended = scores.softmax(dim=-1) @ value
        return self.proj(attended.transpose(1, 2).reshape(count, tokens, channels))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin block on (B, H * W, C) tokens: (shifted) window attention, then the MLP,
    each with a residual. A grid no larger than the window is one window, never shifted
    (as laion's HTSAT does for its last stage, 8 x 8 tokens with window 8)."""

    def __init__(self, dim, resolution, num_heads, window, shift, mlp_ratio=MLP_RATIO):
        super().__init__()
        if min(resolution) <= window:
            window, shift = min(resolution), 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens):
        batch, _, channels = tokens.shape
        height, width = self.resolution
        x = self.norm1(tokens).reshape(batch, height, width, channels)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = partition_windows(x, self.window).reshape(-1, self.window * self.window, channels)
        windows = self.attn(windows, self.attn_mask)
        x = merge_windows(windows.reshape(-1, self.window, self.window, channels), self.window, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        tokens = tokens + x.reshape(batch, height * width, channels)
        return tokens + self.mlp(self.norm2(tokens))


class PatchMerging(nn.Module):
    """(B, H * W, C) -> (B, H/2 * W/2, 2C): each 2 x 2 group concatenated in the order
    (0, 0), (1, 0), (0, 1), (1, 1) (row, column), normalised, projected without bias."""

    def __init__(self, resolution, dim):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim, eps=LAYER_NORM_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, tokens):
        batch, _, channels = tokens.shape
        x = tokens.reshape(batch, *self.resolution, channels)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(batch, -1, 4 * channels)))


class SwinStage(nn.Module):
    """`depth` blocks, every second one shifted by half a window, then patch merging unless last."""

    def __init__(self, dim, resolution, depth, num_heads, window, merge, mlp_ratio=MLP_RATIO):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window, 0 if index % 2 == 0 else window // 2, mlp_ratio)
            for index in range(depth))
        self.downsample = PatchMerging(resolution, dim) if merge else None

    def forward(self, tokens):
        for block in self.blocks:
            tokens = block(tokens)
        return tokens if self.downsample is None else self.downsample(tokens)


class PatchEmbed(nn.Module):
    """(B, 1, S, S) image -> (B, (S/p)^2, D) normalised tokens of non-overlapping p x p patches."""

    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, image):
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


# ---------------------------------------------------------------- the encoder

class HTSATAudioEncoder(nn.Module):
    """laion_clap's HTSAT audio branch up to its final LayerNorm, fusion model on clips of at most
    10 s: (B, T, mel_bins) fusion log-mel -> (B, rows, C) feature maps in VALOR's row order.

    Defaults are HTSAT-tiny (T <= 1024, 64 mel bins -> (B, 64, 768)). Parameter and buffer names
    are those under `audio_branch.` in laion's CLAP state dict (load_clap_audio_weights). bn0
    always uses its stored statistics and stochastic depth is left out: this is an extractor,
    not a training network.
    """

    def __init__(self, mel_bins=clap_mel.MEL_BINS, spec_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=EMBED_DIM,
                 depths=DEPTHS, num_heads=NUM_HEADS, window_size=WINDOW_SIZE, mlp_ratio=MLP_RATIO):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"one head count per stage: depths {depths}, num_heads {num_heads}")
        self.mel_bins, self.spec_size = mel_bins, spec_size
        # the clip is cut into freq_ratio pieces of time stacked along frequency to make a square
        self.freq_ratio = spec_size // mel_bins
        grid = spec_size // patch_size
        self.final_grid = grid // 2 ** (len(depths) - 1)
        if self.freq_ratio < 1 or self.final_grid % self.freq_ratio:
            raise ValueError(f"spec_size {spec_size}, {mel_bins} mel bins and {len(depths)} stages do not fold into "
                             "whole time pieces")
        self.bn0 = nn.BatchNorm2d(mel_bins, eps=BATCH_NORM_EPS)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.layers = nn.ModuleList(
            SwinStage(embed_dim * 2 ** index, (grid // 2 ** index,) * 2, depth, heads, window_size,
                      merge=index < len(depths) - 1, mlp_ratio=mlp_ratio)
            for index, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=LAYER_NORM_EPS)

    @property
    def max_frames(self):
        return self.spec_size * self.freq_ratio

    def mel_to_image(self, mel):
        """(B, T, mel_bins) -> (B, 1, S, S): bn0 per mel bin, bicubic (align_corners) stretch to
        S * freq_ratio frames, the time pieces stacked (row = piece * mel_bins + bin, column = frame)."""
        batch, frames, bins = mel.shape
        if bins != self.mel_bins or not 1 < frames <= self.max_frames:
            raise ValueError(f"HTSAT takes (B, T, {self.mel_bins}) mel spectrograms with 1 < T <= {self.max_frames}, "
                             f"got {tuple(mel.shape)}")
        bn = self.bn0
        x = F.batch_norm(mel.transpose(1, 2), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         training=False, eps=bn.eps)
        x = x.transpose(1, 2)[:, None]                                    # (B, 1, T, bins)
        if frames < self.max_frames:
            x = F.interpolate(x, size=(self.max_frames, bins), mode="bicubic", align_corners=True)
        side = self.spec_size // self.freq_ratio
        if bins < side:
            x = F.interpolate(x, size=(self.max_frames, side), mode="bicubic", align_corners=True)
        pieces = x.reshape(batch, self.freq_ratio, self.spec_size, side)
        return pieces.transpose(2, 3).reshape(batch, 1, self.spec_size, self.spec_size)

    def encode(self, image):
        """(B, 1, S, S) -> (B, final_grid^2, num_features) tokens after the final LayerNorm."""
        tokens = self.patch_embed(image)
        for stage in self.layers:
            tokens = stage(tokens)
        return self.norm(tokens)

    def group_rows(self, tokens):
        """(B, G^2, C) tokens of the final G x G grid (grid row = piece * bands + band, where
        bands = G / freq_ratio) -> (B, bands * freq_ratio * G, C) with row = band * (freq_ratio * G)
        + piece * G + column, i.e. per band the clip's time steps in order (VALOR's feat_maps)."""
        batch, _, channels = tokens.shape
        grid, pieces = self.final_grid, self.freq_ratio
        maps = tokens.transpose(1, 2).reshape(batch, channels, pieces, grid // pieces, grid)
        return maps.permute(0, 3, 2, 4, 1).reshape(batch, -1, channels)

    def forward(self, mel):
        """(B, T, mel_bins) dB -> (B, rows, num_features) float, not normalised."""
        return self.group_rows(self.encode(self.mel_to_image(mel)))


def htsat_tiny():
    """HTSAT-tiny, the audio encoder of laion_clap's HTSAT-tiny CLAP models."""
    return HTSATAudioEncoder()


# ---------------------------------------------------------------- loading

def audio_branch_state(checkpoint):
    """{name under audio_branch.: tensor} of a laion_clap checkpoint as torch.load gives it (a
    training checkpoint {"state_dict": ...} or a bare state dict, keys with or without "module.")."""
    state = checkpoint.get(CHECKPOINT_STATE_KEY, checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"a CLAP checkpoint is a dict (with a {CHECKPOINT_STATE_KEY!r} entry or bare), "
                         f"got {type(checkpoint).__name__}")
    audio = {}
    for key, value in state.items():
        name = key[len(PARALLEL_PREFIX):] if key.startswith(PARALLEL_PREFIX) else key
        if name.startswith(AUDIO_PREFIX):
            audio[name[len(AUDIO_PREFIX):]] = value
    if not audio:
        raise ValueError(f"the checkpoint has no {AUDIO_PREFIX}* entries: not a laion_clap CLAP checkpoint")
    return audio


def load_clap_audio_weights(model, checkpoint):
    """Loads the audio branch of a laion_clap checkpoint (`630k-fusion-best.pt` as torch.load gives
    it) into `model`, an HTSATAudioEncoder, and returns the model.

    Entries outside audio_branch. (text branch, projections, logit scales) are ignored on purpose,
    and so are the audio parts the map never uses (UNUSED_AUDIO_PARTS). The checkpoint's copies of
    the geometry buffers (relative position indices, shift masks) must equal the model's.
    ValueError naming every missing, unexpected, misshapen or disagreeing entry; the model is left
    unchanged then.
    """
    audio = audio_branch_state(checkpoint)
    expected = model.state_dict()
    fixed = {name: buffer for name, buffer in model.named_buffers()
             if name.endswith(FIXED_BUFFER_SUFFIXES) and name not in expected}
    unused = {key for key in audio if key.startswith(UNUSED_AUDIO_PARTS)}
    missing = sorted(AUDIO_PREFIX + key for key in set(expected) - set(audio))
    unexpected = sorted(AUDIO_PREFIX + key for key in set(audio) - set(expected) - set(fixed) - unused)
    if missing or unexpected:
        raise ValueError(f"CLAP audio branch does not fit: missing keys {missing}, unexpected keys {unexpected}")
    tensors = {key: torch.as_tensor(audio[key]) for key in expected}
    wrong = [f"{AUDIO_PREFIX}{key}: {tuple(tensors[key].shape)} instead of {tuple(expected[key].shape)}"
             for key in expected if tensors[key].shape != expected[key].shape]
    wrong += [f"{AUDIO_PREFIX}{key} differs from the one this geometry gives" for key, buffer in fixed.items()
              if key in audio and not torch.equal(torch.as_tensor(audio[key]).to(buffer.dtype), buffer)]
    if wrong:
        raise ValueError("CLAP audio branch does not fit: " + "; ".join(wrong))
    model.load_state_dict(tensors)
    return model


# ---------------------------------------------------------------- one call per batch of clips

def clap_feature_maps(model, waveforms, sample_rate=clap_mel.SAMPLE_RATE):
    """(B, 64, 768) float32 numpy feature maps of B clips, each a 48 kHz mono waveform in [-1, 1]
    (VALOR's CLAP/features/<id>.npy per clip): prepare_clip, fusion_mel, the encoder, on the
    model's device. Any clip length is accepted; VALOR's index picking makes it 480,000 samples."""
    device = next(model.parameters()).device
    mels = torch.stack([clap_mel.fusion_mel(clap_mel.prepare_clip(waveform, sample_rate)) for waveform in waveforms])
    with torch.no_grad():
        return model(mels.to(device)).float().cpu().numpy()
