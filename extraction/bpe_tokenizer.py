"""Byte-level BPE tokenizers of CLIP's text tower and of RoBERTa (CLAP's text branch), read from
the published `vocab.json` and `merges.txt` (docs/ZERO_SHOT.md).

Both turn a text into pieces with a regular expression, each piece into its UTF-8 bytes written
as printable characters (one fixed character per byte value, GPT-2's table), and those into
tokens by applying the ranked merges of merges.txt, best rank first, until none applies:

- CLIP (HF transformers' CLIPTokenizer / CLIPTokenizerFast of openai/clip-vit-large-patch14,
  which CLIPProcessor runs): blanks collapsed, lower case, pieces are words, single digits and
  runs of other symbols; the last character of each piece carries "</w>"; the sequence is
  <|startoftext|> ... <|endoftext|>, padded with the pad token to the longest text of the batch
  (padding=True), attention mask 0 on the padding.
- RoBERTa (transformers' RobertaTokenizer of roberta-base, as laion_clap calls it): case kept,
  a piece keeps the blank in front of it; the sequence is <s> ... </s>, cut to max_length 77
  (truncation=True) and padded with <pad> to exactly 77 (padding="max_length").

The piece patterns use Unicode letter and number classes; Python's `re` has no \\p{L} / \\p{N},
so letters are `[^\\W\\d_]` and numbers `\\d`: identical for ASCII text (every prompt here),
possibly different for rare non-ASCII numerals. `byte_vocab` builds a complete vocabulary
without files (every byte a token, no merges), for smoke tests with random weights.
"""
import functools
import json
import os
import re
import unicodedata

import numpy as np

from utils.errors import UserError

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_PAD = CLIP_UNK = CLIP_EOS          # openai/clip-vit-large-patch14's tokenizer_config
CLIP_WORD_END = "</w>"
CLIP_CONTEXT = 77
# CLIPTokenizer reads at most this many merges after the header line (49152 tokens less the 256
# bytes and the 2 specials); the published file has exactly as many
CLIP_MAX_MERGES = 49152 - 256 - 2

ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS, ROBERTA_UNK = "<s>", "<pad>", "</s>", "<unk>"
ROBERTA_MAX_LENGTH = 77                 # laion_clap's tokenizer call

_LETTERS, _NUMBER, _OTHER = r"[^\W\d_]+", r"\d", r"(?:[^\s\w]|_)+"
CLIP_PATTERN = re.compile(
    rf"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|{_LETTERS}|{_NUMBER}|{_OTHER}", re.IGNORECASE)
GPT2_PATTERN = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?{_LETTERS}| ?{_NUMBER}+| ?{_OTHER}|\s+(?!\S)|\s+")


@functools.cache
def byte_characters():
    """[256] the printable character standing for each byte value: bytes that are printable
    Latin-1 characters (33-126, 161-172, 174-255) stand for themselves, the other 68 get the
    characters from 256 on, in byte order."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for value in range(256):
        if value in printable:
            table[value] = chr(value)
        else:
            table[value] = chr(256 + extra)
            extra += 1
    return [table[value] for value in range(256)]


def apply_merges(symbols, ranks):
    """The symbols after merging adjacent pairs by rank (lowest first; every occurrence of the
    chosen pair, left to right) until no adjacent pair has a rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        ranked = [rank for rank, _ in pairs if rank is not None]
        if not ranked:
            break
        best = min(ranked)
        first, second = next((symbols[i], symbols[i + 1]) for rank, i in pairs if rank == best)
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def read_vocab(path):
    try:
        with open(path, encoding="utf-8") as handle:
            vocab = json.load(handle)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read a vocab.json ({error})") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise UserError(f"{path}: not a vocab.json (a JSON object of token: id)")
    return vocab


def read_merges(path, limit=None):
    """[(first, second)] of a merges.txt: the '#version' header line skipped, then one pair a line."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read a merges.txt ({error})") from None
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    pairs = []
    for number, line in enumerate(lines, 2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise UserError(f"{path}: line {number} {line!r} is not a pair of symbols")
        pairs.append(tuple(parts))
    return pairs[:limit] if limit is not None else pairs


def byte_vocab(specials, word_end=None):
    """{token: id} of the specials, then every byte character (and, with word_end, each also
    followed by it): a vocabulary that encodes any text without merges."""
    tokens = list(specials) + byte_characters() + ([c + word_end for c in byte_characters()] if word_end else [])
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


class _ByteBPE:
    """What CLIP's and RoBERTa's tokenizers share: byte-level BPE over a vocabulary that must hold
    the tokenizer's `specials` (`name` says whose, in the error)."""

    def __init__(self, vocab, merges, unk, specials, name):
        self.vocab = dict(vocab)
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.unk = unk
        self._cache = {}
        for special in specials:
            if special not in self.vocab:
                raise UserError(f"a {name} vocabulary holds {special}; this one does not")

    def token_id(self, token):
        if token in self.vocab:
            return self.vocab[token]
        if self.unk in self.vocab:
            return self.vocab[self.unk]
        raise UserError(f"token {token!r} is not in the vocabulary, which has no {self.unk}")

    def piece_tokens(self, piece):
        if piece not in self._cache:
            self._cache[piece] = self._bpe(piece)
        return self._cache[piece]

    def encode_pieces(self, pieces):
        return [self.token_id(token) for piece in pieces for token in self.piece_tokens(piece)]

    @staticmethod
    def as_characters(piece):
        table = byte_characters()
        return [table[value] for value in piece.encode("utf-8")]


class CLIPTokenizer(_ByteBPE):
    """CLIP's tokenizer. `ids(text)` -> token ids with <|startoftext|> and <|endoftext|>;
    `__call__(texts)` -> {"input_ids", "attention_mask"} (B, L) int64 numpy, padded to the longest."""

    def __init__(self, vocab, merges, context_length=CLIP_CONTEXT):
        super().__init__(vocab, merges, CLIP_UNK, (CLIP_BOS, CLIP_EOS, CLIP_PAD), "CLIP")
        self.context_length = context_length

    @classmethod
    def from_files(cls, vocab_path, merges_path):
        return cls(read_vocab(vocab_path), read_merges(merges_path, CLIP_MAX_MERGES))

    def _bpe(self, piece):
        characters = self.as_characters(piece)
        characters[-1] += CLIP_WORD_END
        return apply_merges(characters, self.ranks)

    def pieces(self, text):
        text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()
        return CLIP_PATTERN.findall(text)

    def ids(self, text):
        ids = [self.vocab[CLIP_BOS], *self.encode_pieces(self.pieces(text)), self.vocab[CLIP_EOS]]
        if len(ids) > self.context_length:
            raise UserError(f"text {text!r} is {len(ids)} tokens long; CLIP's text tower takes at most "
                            f"{self.context_length} (VALOR's call does not truncate)")
        return ids

    def __call__(self, texts):
        rows = [self.ids(text) for text in texts]
        return _padded(rows, max(map(len, rows)), self.vocab[CLIP_PAD])


class RobertaTokenizer(_ByteBPE):
    """RoBERTa's (GPT-2's) tokenizer as laion_clap calls it: `__call__(texts)` -> {"input_ids",
    "attention_mask"} (B, 77) int64 numpy, <s> ... </s> cut to 77 and padded with <pad>."""

    def __init__(self, vocab, merges, max_length=ROBERTA_MAX_LENGTH):
        super().__init__(vocab, merges, ROBERTA_UNK, (ROBERTA_BOS, ROBERTA_EOS, ROBERTA_PAD), "RoBERTa")
        self.max_length = max_length

    @classmethod
    def from_files(cls, vocab_path, merges_path):
        return cls(read_vocab(vocab_path), read_merges(merges_path))

    def _bpe(self, piece):
        return apply_merges(self.as_characters(piece), self.ranks)

    def pieces(self, text):
        return GPT2_PATTERN.findall(text)

    def ids(self, text):
        content = self.encode_pieces(self.pieces(text))[:self.max_length - 2]
        return [self.vocab[ROBERTA_BOS], *content, self.vocab[ROBERTA_EOS]]

    def __call__(self, texts):
        return _padded([self.ids(text) for text in texts], self.max_length, self.vocab[ROBERTA_PAD])


def _padded(rows, length, pad_id):
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = row
        attention_mask[i, :len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenizer_files(folder, prefix):
    """(vocab path, merges path) `<prefix>-vocab.json` and `<prefix>-merges.txt` in `folder`,
    UserError naming the missing one."""
    paths = tuple(os.path.join(folder, f"{prefix}-{name}") for name in ("vocab.json", "merges.txt"))
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{path}: missing (the tokenizer file of {prefix}; docs/ZERO_SHOT.md says where "
                            "to download it)")
    return paths
