"""CLIP's text tower as VALOR scored its prompts: HF transformers' `CLIPModel` of
openai/clip-vit-large-patch14, `get_text_features` and `logits_per_image` (docs/ZERO_SHOT.md).

The text tower: token + position embeddings -> 12 pre-LN layers (width 768, 12 heads, MLP 3072
with quick GELU) under a causal mask (and a padding mask) -> final LayerNorm -> the state at the
first end-of-text token (the largest token id of a row, as HF's argmax finds it) -> the bias-free
`text_projection` (768 -> 768). `logits_per_image` is logit_scale.exp() times the cosine between
each image embedding and each text embedding; VALOR's CLIP features (clip_vision) are already the
unit image embeddings, so the logits of a video are `clip_logits(features, text_embeddings,
scale)`.

`CLIPTextTower` keeps HF's names (`text_model.*`, `text_projection.weight`, `logit_scale`), so
the same published file that clip_vision reads loads into it unchanged. tests/test_clip_text.py
compares it with transformers 4.30.2 on seeded random weights.
"""
import torch
import torch.nn.functional as F
from torch import nn

from extraction.bpe_tokenizer import CLIP_CONTEXT
from extraction.clip_vision import LAYER_NORM_EPS, Encoder, load_clip_part

# the text config of openai/clip-vit-large-patch14 (its config.json)
CLIP_TEXT_L14 = dict(vocab_size=49408, width=768, layers=12, heads=12, mlp_width=3072, context_length=CLIP_CONTEXT,
                     projection_dim=768)
TEXT_PREFIX = "text_model."
TEXT_PROJECTION_KEY = "text_projection.weight"
LOGIT_SCALE_KEY = "logit_scale"
TEXT_POSITION_IDS_KEY = "text_model.embeddings.position_ids"
# the tokenizer files of the same Hugging Face repository, saved as clip-vocab.json / clip-merges.txt
CLIP_TOKENIZER_PREFIX = "clip"
CLIP_TOKENIZER_URLS = {name: f"https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/{name}"
                       for name in ("vocab.json", "merges.txt")}


class TextEmbeddings(nn.Module):
    def __init__(self, vocab_size, width, context_length):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(context_length, width)

    def forward(self, input_ids):
        return self.token_embedding(input_ids) + self.position_embedding.weight[:input_ids.shape[1]]


class TextTransformer(nn.Module):
    def __init__(self, vocab_size, width, layers, heads, mlp_width, context_length, eps):
        super().__init__()
        self.embeddings = TextEmbeddings(vocab_size, width, context_length)
        self.encoder = Encoder(layers, width, heads, mlp_width, eps)   # the vision tower's, with a mask
        self.final_layer_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, input_ids, attention_mask=None):
        """(B, T) ids -> (B, width): the final state at each row's largest id (its end of text)."""
        length = input_ids.shape[1]
        allowed = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        states = self.final_layer_norm(self.encoder(self.embeddings(input_ids), allowed))
        return states[torch.arange(len(input_ids), device=input_ids.device), input_ids.argmax(dim=-1)]


class CLIPTextTower(nn.Module):
    """CLIP's text encoder with HF CLIPModel's text layout: `text_model.*`, `text_projection.weight`
    and `logit_scale`. forward: (B, T) input ids (+ attention mask) -> (B, projection_dim), what
    `get_text_features` returns; `features` the same rows L2-normalised. Defaults: ViT-L/14's."""

    def __init__(self, vocab_size=CLIP_TEXT_L14["vocab_size"], width=CLIP_TEXT_L14["width"],
                 layers=CLIP_TEXT_L14["layers"], heads=CLIP_TEXT_L14["heads"], mlp_width=CLIP_TEXT_L14["mlp_width"],
                 context_length=CLIP_TEXT_L14["context_length"], projection_dim=CLIP_TEXT_L14["projection_dim"],
                 eps=LAYER_NORM_EPS):
        super().__init__()
        self.context_length = context_length
        self.text_model = TextTransformer(vocab_size, width, layers, heads, mlp_width, context_length, eps)
        self.text_projection = nn.Linear(width, projection_dim, bias=False)
        # CLIP's initial value log(1 / 0.07); the published file holds the trained one (log 100)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def forward(self, input_ids, attention_mask=None):
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() != 2 or input_ids.shape[1] > self.context_length:
            raise ValueError(f"input ids {tuple(input_ids.shape)}: expected (B, T <= {self.context_length})")
        mask = None if attention_mask is None else torch.as_tensor(attention_mask)
        return self.text_projection(self.text_model(input_ids, mask))

    def features(self, input_ids, attention_mask=None):
        return F.normalize(self(input_ids, attention_mask), dim=-1)


def clip_text_l14():
    return CLIPTextTower(**CLIP_TEXT_L14)


def clip_logits(image_features, text_features, logit_scale):
    """(N, C) `logits_per_image`: exp(logit_scale) * cosine(image_n, text_c); either side may
    come unnormalised (HF normalises both)."""
    image = F.normalize(torch.as_tensor(image_features, dtype=torch.float32), dim=-1)
    text = F.normalize(torch.as_tensor(text_features, dtype=torch.float32), dim=-1)
    return torch.as_tensor(logit_scale, dtype=torch.float32).exp() * image @ text.T


@torch.no_grad()
def clip_text_embeddings(model, tokenizer, texts):
    """(C, projection_dim) float32 unit text embeddings of the prompts, tokenised as VALOR's
    CLIPProcessor call (padding=True)."""
    batch = tokenizer(texts)
    device = next(model.parameters()).device
    ids = torch.from_numpy(batch["input_ids"]).to(device)
    mask = torch.from_numpy(batch["attention_mask"]).to(device)
    return model.features(ids, mask).float().cpu().numpy()


# ---------------------------------------------------------------- weights

def load_clip_text_weights(model, state_dict):
    """Loads the text part of HF CLIPModel's state dict (the published pytorch_model.bin as read)
    into `model`, a CLIPTextTower; returns it. Vision keys are ignored; a text key missing,
    unexpected or misshapen raises UserError naming it and leaves the model unchanged."""
    text = {key: value for key, value in state_dict.items()
            if key.startswith(TEXT_PREFIX) or key in (TEXT_PROJECTION_KEY, LOGIT_SCALE_KEY)}
    return load_clip_part(model, text, TEXT_POSITION_IDS_KEY, "text_model.embeddings.position_embedding.weight",
                          "text")

