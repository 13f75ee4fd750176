"""A tiny CLIP-style byte-level BPE vocabulary, written offline.

Random and embedded priors need a tokenizer that `transformers.CLIPTokenizer` loads exactly like Stable
Diffusion's, without downloading CLIP's 49k-token vocabulary. CLIP's format (Radford et al. 2021):
`vocab.json` maps tokens to ids — the 256 byte symbols, the same with the end-of-word marker `</w>`,
one token per merge, then `<|startoftext|>` and `<|endoftext|>`; `merges.txt` lists merges by rank
after a `#version` header line. Any word then tokenizes (letters fall back to single symbols); the
words given here merge into one token each, which keeps prompts short for tiny text encoders.
"""

import collections
import json
import os

from transformers.models.clip.tokenization_clip import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Words of typical prompts (DreamFusion's gallery, the view suffixes, colours and simple shapes).
DEFAULT_WORDS = (
    "a an the of on in with and photo dslr picture render image model front side back overhead view "
    "red green blue yellow orange purple pink white black gray grey brown gold silver wooden metal glass "
    "cube sphere ball cone cylinder torus pyramid box ring chair table car dog cat corgi squirrel frog "
    "hamburger cake vase teapot lamp tree house robot small large tiny big shiny matte high quality "
    "detailed realistic cartoon sitting wearing made out"
).split()


def _merge_pair(symbols, pair):
  """Replaces each adjacent occurrence of `pair` in the symbol tuple by the merged symbol."""
  out, i = [], 0
  while i < len(symbols):
    if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
      out.append(symbols[i] + symbols[i + 1])
      i += 2
    else:
      out.append(symbols[i])
      i += 1
  return tuple(out)


def learn_merges(words):
  """Byte-pair encoding (Sennrich et al. 2016) on `words` until every word is one token.

  Most frequent pair first, ties broken by the pair itself, so the output is deterministic. Applying
  merges by rank, as CLIPTokenizer does, reproduces this segmentation for every training word.
  """
  segmented = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
  merges = []
  while True:
    counts = collections.Counter(p for s in segmented.values() for p in zip(s, s[1:]))
    if not counts:
      return merges
    best = max(counts, key=lambda p: (counts[p], p))
    merges.append(best)
    segmented = {w: _merge_pair(s, best) for w, s in segmented.items()}


def build_vocab(words=DEFAULT_WORDS):
  """Returns (vocab dict token → id, ranked merge list) for lowercase letter-only `words`."""
  for w in words:
    if not (w.isalpha() and w.islower() and w.isascii()):
      raise ValueError(f"words: {w!r} must be lowercase ASCII letters (CLIP splits on anything else)")
  byte_symbols = list(bytes_to_unicode().values())
  tokens = byte_symbols + [s + "</w>" for s in byte_symbols]
  merges = learn_merges(sorted(set(words)))
  known = set(tokens)
  for a, b in merges:
    if a + b not in known:
      known.add(a + b)
      tokens.append(a + b)
  tokens += [BOS, EOS]
  return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(directory, words=DEFAULT_WORDS, model_max_length=77):
  """Writes vocab.json, merges.txt and tokenizer_config.json that CLIPTokenizer.from_pretrained loads."""
  os.makedirs(directory, exist_ok=True)
  vocab, merges = build_vocab(words)
  with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  config = {
      "tokenizer_class": "CLIPTokenizer",
      "model_max_length": model_max_length,
      "bos_token": BOS,
      "eos_token": EOS,
      "unk_token": EOS,
      "pad_token": EOS,
      "do_lower_case": True,
  }
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=2)
  return directory
