"""CLAP's text branch and audio embedding, as VALOR scored its audio prompts with laion_clap 1.1.4
(`get_text_embedding`, `get_audio_embedding_from_data`, `logit_scale_a`; docs/ZERO_SHOT.md).

Text: RoBERTa-base (transformers' RobertaModel: post-LN BERT layers, GELU, positions counted from
the padding id + 1) -> its pooler (tanh of a dense layer on the <s> state) -> `text_projection`
(768 -> 512, ReLU, 512 -> 512) -> L2-normalised. The tokenizer is roberta-base's, 77 tokens,
padded to 77 (extraction/bpe_tokenizer.py).

Audio, per ~1-s window of a video (VALOR: the loaded 48 kHz waveform of N samples, windows at
round(linspace(0, N, 11))[:10], N // 10 samples each): the int16 round trip, tiled by repeatpad
to 480,000 samples (int(480000 / len) copies, then zeros), the fusion mel (clap_mel), HTSAT
(clap_audio) -> the mean of its (64, 768) map = laion's 768-d `embedding` -> `audio_projection`
(the same MLP shape) -> L2-normalised. Logits = exp(logit_scale_a) * audio @ text^T.
`CLAPWindowEncoder` is HTSAT and the audio projection alone (the `clap_windows` kind of
extraction/extractor.py).

`CLAPTextBranch` / `CLAPProjections` keep laion's names under the CLAP state dict
(`text_branch.*`, `text_projection.*`, `audio_projection.*`, `logit_scale_a`), so
630k-fusion-best.pt loads unchanged. tests/test_clap_text.py compares with laion_clap 1.1.4.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extraction import clap_audio, clap_mel
from extraction.clap_audio import CHECKPOINT_STATE_KEY, PARALLEL_PREFIX
from utils.errors import UserError

# roberta-base's config.json
ROBERTA_BASE = dict(vocab_size=50265, width=768, layers=12, heads=12, mlp_width=3072, max_positions=514)
ROBERTA_PAD_ID = 1                  # padding_idx: positions are counted from it + 1
LAYER_NORM_EPS = 1e-5
JOINT_DIM = 512                     # laion's joint_embed_shape
AUDIO_EMBED_DIM = 768               # HTSAT-tiny's embedding (the model config's embed_dim)
TEXT_PREFIX = "text_branch."
# buffers transformers 4.30.2 saved with the weights; they must hold what the geometry gives
POSITION_IDS = "embeddings.position_ids"
TOKEN_TYPE_IDS = "embeddings.token_type_ids"
PROJECTION_KEYS = ("text_projection.", "audio_projection.")
LOGIT_SCALE_KEY = "logit_scale_a"
CLAP_WINDOWS = 10
# the roberta-base tokenizer files, saved as roberta-vocab.json / roberta-merges.txt
ROBERTA_TOKENIZER_PREFIX = "roberta"
ROBERTA_TOKENIZER_URLS = {name: f"https://huggingface.co/roberta-base/resolve/main/{name}"
                          for name in ("vocab.json", "merges.txt")}


class RobertaEmbeddings(nn.Module):
    def __init__(self, vocab_size, width, max_positions):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.token_type_embeddings = nn.Embedding(1, width)
        self.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, input_ids):
        real = (input_ids != ROBERTA_PAD_ID).long()
        positions = torch.cumsum(real, dim=1) * real + ROBERTA_PAD_ID
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class RobertaSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))

    def forward(self, states, allowed):
        batch, length, width = states.shape

        def split(projection):
            return projection(states).view(batch, length, self.heads, -1).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(split(self.query), split(self.key), split(self.value),
                                               attn_mask=allowed)
        return mixed.transpose(1, 2).reshape(batch, length, width)


class DenseNorm(nn.Module):
    """LayerNorm(dense(x) + residual), BERT's output block."""

    def __init__(self, width_in, width):
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class RobertaAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.self = RobertaSelfAttention(width, heads)
        self.output = DenseNorm(width, width)

    def forward(self, states, allowed):
        return self.output(self.self(states, allowed), states)


class Intermediate(nn.Module):
    def __init__(self, width, mlp_width):
        super().__init__()
        self.dense = nn.Linear(width, mlp_width)

    def forward(self, x):
        return F.gelu(self.dense(x))


class RobertaLayer(nn.Module):
    def __init__(self, width, heads, mlp_width):
        super().__init__()
        self.attention = RobertaAttention(width, heads)
        self.intermediate = Intermediate(width, mlp_width)
        self.output = DenseNorm(mlp_width, width)

    def forward(self, states, allowed):
        attended = self.attention(states, allowed)
        return self.output(self.intermediate(attended), attended)


class RobertaEncoder(nn.Module):
    def __init__(self, layers, width, heads, mlp_width):
        super().__init__()
        self.layer = nn.ModuleList(RobertaLayer(width, heads, mlp_width) for _ in range(layers))

    def forward(self, states, allowed):
        for layer in self.layer:
            states = layer(states, allowed)
        return states


class Pooler(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.dense = nn.Linear(width, width)

    def forward(self, states):
        return torch.tanh(self.dense(states[:, 0]))


class CLAPTextBranch(nn.Module):
    """RoBERTa up to its pooler output, with RobertaModel's parameter names (laion's
    `text_branch.*`). forward: (B, T) ids, (B, T) attention mask -> (B, width)."""

    def __init__(self, vocab_size=ROBERTA_BASE["vocab_size"], width=ROBERTA_BASE["width"],
                 layers=ROBERTA_BASE["layers"], heads=ROBERTA_BASE["heads"], mlp_width=ROBERTA_BASE["mlp_width"],
                 max_positions=ROBERTA_BASE["max_positions"]):
        super().__init__()
        self.embeddings = RobertaEmbeddings(vocab_size, width, max_positions)
        self.encoder = RobertaEncoder(layers, width, heads, mlp_width)
        self.pooler = Pooler(width)

    def forward(self, input_ids, attention_mask):
        allowed = torch.as_tensor(attention_mask).bool()[:, None, None, :]
        return self.pooler(self.encoder(self.embeddings(torch.as_tensor(input_ids)), allowed))


def projection_mlp(width_in, width=JOINT_DIM):
    """laion's projection: Linear, ReLU, Linear (keys .0.* and .2.*)."""
    return nn.Sequential(nn.Linear(width_in, width), nn.ReLU(), nn.Linear(width, width))


class CLAPZeroShot(nn.Module):
    """What CLAP zero-shot needs beside the HTSAT map: the text branch, both projections and
    logit_scale_a, named as in laion's CLAP state dict."""

    def __init__(self, text_branch=None, audio_dim=AUDIO_EMBED_DIM, joint_dim=JOINT_DIM):
        super().__init__()
        self.text_branch = CLAPTextBranch() if text_branch is None else text_branch
        width = self.text_branch.pooler.dense.out_features
        self.text_projection = projection_mlp(width, joint_dim)
        self.audio_projection = projection_mlp(audio_dim, joint_dim)
        self.logit_scale_a = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def text_embeddings(self, input_ids, attention_mask):
        """(B, joint_dim) unit text embeddings (laion's get_text_embedding)."""
        return F.normalize(self.text_projection(self.text_branch(input_ids, attention_mask)), dim=-1)

    def audio_embeddings(self, maps):
        """(B, joint_dim) unit audio embeddings of (B, rows, 768) HTSAT maps: the mean over rows is
        laion's `embedding` (its avgpool over the 64 tokens), then audio_projection."""
        return F.normalize(self.audio_projection(torch.as_tensor(maps).mean(dim=1)), dim=-1)

    def logits(self, audio_embeddings, text_embeddings):
        audio = torch.as_tensor(audio_embeddings, dtype=torch.float32)
        text = torch.as_tensor(text_embeddings, dtype=torch.float32)
        return self.logit_scale_a.exp() * audio @ text.T


# ---------------------------------------------------------------- audio windows

def window_bounds(num_samples, windows=CLAP_WINDOWS):
    """[(start, end)] of VALOR's windows: starts round(linspace(0, N, windows + 1))[:windows]
    (halves to even), each N // windows samples long."""
    if num_samples < windows:
        raise ValueError(f"{num_samples} samples cannot make {windows} windows")
    starts = np.round(np.linspace(0, num_samples, windows + 1)).astype(np.int64)[:windows]
    step = num_samples // windows
    return [(int(start), int(start) + step) for start in starts]


def repeat_pad(samples, length=clap_mel.CLIP_SAMPLES):
    """laion's repeatpad: int(length / n) copies of the n samples, then zeros up to `length`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or not 0 < len(samples) <= length:
        raise ValueError(f"repeatpad takes 1 to {length} mono samples, got shape {samples.shape}; a window "
                         "longer than 10 s would be cut at random by laion_clap")
    tiled = np.tile(samples, length // len(samples))
    return np.concatenate([tiled, np.zeros(length - len(tiled), dtype=np.float32)])


def window_mels(waveform, sample_rate=clap_mel.SAMPLE_RATE, windows=CLAP_WINDOWS):
    """(windows, 1001, 64) fusion mels of VALOR's ~1-s windows of one 48 kHz mono waveform in [-1, 1]
    (the whole loaded clip, not forced to 480,000 samples)."""
    if sample_rate != clap_mel.SAMPLE_RATE:
        raise ValueError(f"CLAP takes {clap_mel.SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"CLAP takes a mono waveform (num_samples,), got shape {samples.shape}")
    return torch.stack([clap_mel.fusion_mel(repeat_pad(clap_mel.int16_round_trip(samples[start:end])))
                        for start, end in window_bounds(len(samples), windows)])


@torch.no_grad()
def clap_window_embeddings(encoder, zero_shot, waveform, sample_rate=clap_mel.SAMPLE_RATE):
    """(10, 512) float32 unit audio embeddings of VALOR's 10 windows of one clip; `encoder` an
    HTSATAudioEncoder, `zero_shot` a CLAPZeroShot."""
    device = next(encoder.parameters()).device
    maps = encoder(window_mels(waveform, sample_rate).to(device))
    return zero_shot.audio_embeddings(maps).float().cpu().numpy()


class CLAPWindowEncoder(nn.Module):
    """HTSAT and CLAP's audio projection without the text branch: (B, 1001, 64) fusion mels of
    windows -> (B, joint_dim) unit audio embeddings, as CLAPZeroShot.audio_embeddings of the
    encoder's maps (it can stand for `zero_shot` in clap_window_embeddings). Loads with
    `load_clap_window_weights`."""

    def __init__(self, encoder, audio_dim=AUDIO_EMBED_DIM, joint_dim=JOINT_DIM):
        super().__init__()
        self.encoder = encoder
        self.audio_projection = projection_mlp(audio_dim, joint_dim)

    audio_embeddings = CLAPZeroShot.audio_embeddings

    def forward(self, mels):
        return self.audio_embeddings(self.encoder(mels))


@torch.no_grad()
def clap_text_embeddings(zero_shot, tokenizer, texts):
    """(C, 512) float32 unit text embeddings, tokenised as laion_clap does (77 tokens)."""
    batch = tokenizer(texts)
    device = next(zero_shot.parameters()).device
    return zero_shot.text_embeddings(torch.from_numpy(batch["input_ids"]).to(device),
                                     torch.from_numpy(batch["attention_mask"]).to(device)).float().cpu().numpy()


# ---------------------------------------------------------------- weights

def _clap_state(checkpoint):
    state = checkpoint.get(CHECKPOINT_STATE_KEY, checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError("a CLAP checkpoint is a dict (bare or with a 'state_dict' entry)")
    return {key[len(PARALLEL_PREFIX):] if key.startswith(PARALLEL_PREFIX) else key: value
            for key, value in state.items()}


def load_clap_window_weights(model, checkpoint):
    """Loads the audio branch (clap_audio.load_clap_audio_weights) and audio_projection.* of a laion_clap
    checkpoint into `model`, a CLAPWindowEncoder; returns it. The text entries are ignored. A key
    missing, unexpected or misshapen raises ValueError or RuntimeError (the model is not to be used
    then)."""
    prefix = PROJECTION_KEYS[1]   # audio_projection.
    projection = {key[len(prefix):]: torch.as_tensor(value) for key, value in _clap_state(checkpoint).items()
                  if key.startswith(prefix)}
    model.audio_projection.load_state_dict(projection)
    clap_audio.load_clap_audio_weights(model.encoder, checkpoint)
    return model


def load_clap_zero_shot_weights(model, checkpoint):
    """Loads text_branch.*, text_projection.*, audio_projection.* and logit_scale_a of a laion_clap
    checkpoint (630k-fusion-best.pt as torch.load gives it) into `model`, a CLAPZeroShot; returns
    it. Other entries (the audio branch, the *_transform MLPs, logit_scale_t) are ignored; a key
    missing, unexpected or misshapen, or a position/token-type buffer that is not what RoBERTa
    makes, raises UserError and leaves the model unchanged."""
    state = _clap_state(checkpoint)
    wanted = {key: value for key, value in state.items()
              if key.startswith((TEXT_PREFIX, *PROJECTION_KEYS)) or key == LOGIT_SCALE_KEY}
    buffers = {name: wanted.pop(TEXT_PREFIX + name) for name in (POSITION_IDS, TOKEN_TYPE_IDS)
               if TEXT_PREFIX + name in wanted}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(wanted)), sorted(set(wanted) - set(expected))
    if missing or unexpected:
        raise UserError(f"CLAP checkpoint does not fit the text branch and projections: missing keys "
                        f"{missing[:10]}, unexpected keys {unexpected[:10]}")
    tensors = {key: torch.as_tensor(value) for key, value in wanted.items()}
    wrong = [f"{key}: {tuple(tensors[key].shape)} instead of {tuple(target.shape)}"
             for key, target in expected.items() if tensors[key].shape != target.shape]
    positions = expected[TEXT_PREFIX + "embeddings.position_embeddings.weight"].shape[0]
    if POSITION_IDS in buffers and not torch.equal(torch.as_tensor(buffers[POSITION_IDS]).long().reshape(-1),
                                                   torch.arange(positions)):
        wrong.append(f"{TEXT_PREFIX}{POSITION_IDS} is not 0 .. {positions - 1}")
    if TOKEN_TYPE_IDS in buffers and torch.as_tensor(buffers[TOKEN_TYPE_IDS]).any():
        wrong.append(f"{TEXT_PREFIX}{TOKEN_TYPE_IDS} is not all 0")
    if wrong:
        raise UserError("CLAP checkpoint does not fit: " + "; ".join(wrong))
    model.load_state_dict(tensors)
    return model
