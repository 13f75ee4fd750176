"""A CLIP-style byte-level BPE tokenizer trained offline on the world's captions.

The files are CLIP's own format (vocab.json + merges.txt), so the shipped prior loads through
`transformers.CLIPTokenizer.from_pretrained(dir, model_max_length=77)` exactly like Stable Diffusion's:
lowercased text, CLIP's word-splitting regex, `</w>` marking word ends, `<|startoftext|>` as BOS and
`<|endoftext|>` as EOS and padding. The vocabulary holds all 512 base symbols (each byte, with and
without `</w>`), so any text tokenizes; merges are learned from the captions, so every caption word is
one token.
"""

import json
import os
from typing import Sequence

import numpy as np
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, trainers

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77  # CLIP's context length; Stable Diffusion pipelines always pad to it
_SUFFIX = "</w>"
# CLIP's pre-tokenisation regex (contractions, letter runs, single digits, punctuation runs).
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def learn_bpe(texts: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """Learns BPE merges on `texts` with CLIP's normalisation and pre-tokenisation.

  Returns (vocab, merges) in CLIP's layout: the 256 byte symbols, the same with `</w>`, one entry per
  merge in merge order, then BOS and EOS.
  """
  bpe = tokenizers.Tokenizer(models.BPE(end_of_word_suffix=_SUFFIX))
  bpe.normalizer = normalizers.Sequence([
      normalizers.NFC(), normalizers.Replace(tokenizers.Regex(r"\s+"), " "), normalizers.Lowercase()])
  bpe.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(_CLIP_SPLIT), behavior="removed", invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  trainer = trainers.BpeTrainer(
      vocab_size=100_000, min_frequency=1, show_progress=False, end_of_word_suffix=_SUFFIX,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  bpe.train_from_iterator(list(texts), trainer=trainer)
  merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
            for m in json.loads(bpe.to_str())["model"]["merges"]]
  # CLIP's byte order: bytes_to_unicode maps printable bytes to themselves first; the library's
  # alphabet is the same 256 symbols, sorted for a reproducible file.
  base = sorted(pre_tokenizers.ByteLevel.alphabet())
  symbols = base + [b + _SUFFIX for b in base] + ["".join(m) for m in merges] + [BOS, EOS]
  vocab = {}
  for s in symbols:
    vocab.setdefault(s, len(vocab))
  return vocab, merges


def save_tokenizer(directory: str, texts: Sequence[str]):
  """Learns a tokenizer on `texts` and writes it to `directory` as a loadable CLIPTokenizer."""
  import transformers  # pylint: disable=g-import-not-at-top  (heavy; only needed when writing)
  vocab, merges = learn_bpe(texts)
  os.makedirs(directory, exist_ok=True)
  vocab_path, merges_path = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(merges_path, "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  tok = transformers.CLIPTokenizer(vocab_path, merges_path, model_max_length=MAX_LENGTH)
  tok.save_pretrained(directory)  # adds tokenizer_config.json and special_tokens_map.json
  return tok


def load_tokenizer(directory: str):
  """The tokenizer written by save_tokenizer (or any CLIP tokenizer folder)."""
  import transformers  # pylint: disable=g-import-not-at-top
  return transformers.CLIPTokenizer.from_pretrained(directory, model_max_length=MAX_LENGTH)


def encode(tokenizer, texts: Sequence[str]) -> np.ndarray:
  """Token ids [N, 77] int32, padded with EOS and truncated as Stable Diffusion pipelines do."""
  ids = tokenizer(list(texts), padding="max_length", max_length=MAX_LENGTH, truncation=True,
                  return_tensors="np").input_ids
  return ids.astype(np.int32)
