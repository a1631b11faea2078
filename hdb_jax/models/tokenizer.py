"""A small CLIP BPE tokenizer made offline, saved in the real tokenizer's file format.

The real SD1.5 tokenizer is `openai/clip-vit-large-patch14`'s (49,408 tokens). Tests and the demo
need one that exists without a download: this one has CLIP's 256 byte symbols (with and without the
end-of-word mark), merges for a small vocabulary of prompt words, and CLIP's two special tokens, so
any text still tokenizes (unknown words fall back to characters).
"""

import json
import os
from typing import Any, Sequence

from transformers import CLIPTokenizer

from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

TINY_WORDS = (
  "a",
  "an",
  "the",
  "of",
  "in",
  "as",
  "on",
  "with",
  "and",
  "photo",
  "picture",
  "painting",
  "face",
  "person",
  "man",
  "woman",
  "portrait",
  "style",
  "rock",
  "star",
  "sks",
  "impressionist",
  "oil",
  "sketch",
  "pencil",
  "wearing",
  "hat",
  "beach",
  "city",
  "night",
  "smiling",
  "cartoon",
  "pop",
  "art",
  "vintage",
  "close",
  "up",
  "high",
  "quality",
  "astronaut",
  "statue",
  "marble",
  "watercolor",
)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
  """CLIP's reversible byte -> printable character table, in CLIP's order."""
  printable = (
    list(range(ord("!"), ord("~") + 1))
    + list(range(ord("¡"), ord("¬") + 1))
    + list(range(ord("®"), ord("ÿ") + 1))
  )
  chars, extra = [], 0
  for byte in range(256):
    if byte in printable:
      chars.append(chr(byte))
    else:
      chars.append(chr(256 + extra))
      extra += 1
  return chars


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
  """Every occurrence of `pair` in symbols joined, left to right (as CLIP's BPE applies a merge)."""
  out, k = [], 0
  while k < len(symbols):
    if k + 1 < len(symbols) and (symbols[k], symbols[k + 1]) == pair:
      out.append(symbols[k] + symbols[k + 1])
      k += 2
    else:
      out.append(symbols[k])
      k += 1
  return out


def learn_merges(words: Sequence[str]) -> list[tuple[str, str]]:
  """BPE merges learned on `words` until each is one symbol: repeatedly the most frequent adjacent
  pair (ties: the first seen). Encoding applies merges by rank, so a learned word comes out as the
  one token its training ended with (merges written per word could interfere across words)."""
  pieces = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in dict.fromkeys(words)}
  merges = []
  while True:
    counts: dict[tuple[str, str], int] = {}
    for symbols in pieces.values():
      for pair in zip(symbols, symbols[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    if not counts:
      return merges
    best = max(counts, key=counts.get)  # dicts keep insertion order: ties go to the first seen
    merges.append(best)
    pieces = {w: _merge(symbols, best) for w, symbols in pieces.items()}


def write_tiny_tokenizer(
  directory: str, words: Sequence[str] = TINY_WORDS, max_length: int = 77
) -> CLIPTokenizer:
  """Writes vocab.json/merges.txt (+ tokenizer configs) to `directory` and returns the tokenizer:
  each of `words` is one token, any other text falls back to characters; texts are padded to
  `max_length` tokens."""
  os.makedirs(directory, exist_ok=True)
  base = _bytes_to_unicode()
  vocab_list = base + [c + "</w>" for c in base]
  merges = learn_merges(words)
  for left, right in merges:
    if left + right not in vocab_list:
      vocab_list.append(left + right)
  vocab_list += [BOS, EOS]
  vocab = {token: index for index, token in enumerate(vocab_list)}
  vocab_path = os.path.join(directory, "vocab.json")
  merges_path = os.path.join(directory, "merges.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(merges_path, "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n")
    f.writelines(f"{left} {right}\n" for left, right in merges)
  tokenizer = CLIPTokenizer(
    vocab_path,
    merges_path,
    model_max_length=max_length,
    pad_token=EOS,
    bos_token=BOS,
    eos_token=EOS,
    unk_token=EOS,
  )
  tokenizer.save_pretrained(directory)
  return tokenizer


def pad_to_length(tokenizer: Any, texts: Sequence[str]) -> Any:
  """texts -> the tokenizer's numpy encoding (input_ids, attention_mask: [N, max_length]), padded
  and truncated to its model_max_length, as CLIP text towers are fed."""
  return tokenizer(
    list(texts),
    padding="max_length",
    truncation=True,
    max_length=tokenizer.model_max_length,
    return_tensors="np",
  )
