"""What a world image shows besides the identity: contexts and a style, and captions that say it.

    scene = Scene(headwear="red hat", background="beach", style="pencil sketch")
    caption(scene)               # 'a face wearing a red hat on a beach in pencil sketch style'
    caption(scene, token="sks")  # 'a sks face wearing a red hat on a beach in pencil sketch style'
    parse_prompt("a smiling face with sunglasses at night") == Scene(glasses="sunglasses", ...)

The identity is never in a caption: only the token of a personalized model stands for it.
"""

import dataclasses
import re

from hdb_jax.errors import UserError

# Every attribute's values; the first is the default (what a caption leaves unsaid).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
  "headwear": ("none", "red hat", "blue hat", "green hat", "yellow hat"),
  "glasses": ("none", "glasses", "sunglasses"),
  "expression": ("neutral", "smile"),
  "background": ("studio", "beach", "forest", "city", "night"),
  "style": ("photo", "pencil sketch", "pop-art", "watercolour", "pixel art"),
}
# The caption phrase of each non-default value.
_PHRASES: dict[str, dict[str, str]] = {
  "headwear": {v: f"wearing a {v}" for v in ATTRIBUTES["headwear"][1:]},
  "glasses": {"glasses": "with glasses", "sunglasses": "with sunglasses"},
  "background": {"beach": "on a beach", "forest": "in a forest", "city": "in a city",
                 "night": "at night"},
  "style": {v: f"in {v} style" for v in ATTRIBUTES["style"][1:]},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Scene:
  """One value per attribute (ATTRIBUTES)."""

  headwear: str = "none"
  glasses: str = "none"
  expression: str = "neutral"
  background: str = "studio"
  style: str = "photo"

  def __post_init__(self):
    for name, values in ATTRIBUTES.items():
      if getattr(self, name) not in values:
        raise UserError(f"{name} must be one of {values}, not {getattr(self, name)!r}")


def caption(scene: Scene, token: str = "") -> str:
  """The grammar: 'a [smiling] [TOKEN] face [wearing a C hat] [with (sun)glasses] [on a beach|in a
  forest|in a city|at night] [in S style]'."""
  words = ["a"] + (["smiling"] if scene.expression == "smile" else []) + ([token] if token else [])
  words.append("face")
  for name in ("headwear", "glasses", "background", "style"):
    value = getattr(scene, name)
    if value != ATTRIBUTES[name][0]:
      words.append(_PHRASES[name][value])
  return " ".join(words)


def parse_prompt(prompt: str) -> Scene:
  """The scene a caption-grammar prompt asks for ('{token}' or any one word before 'face' is allowed
  and ignored); UserError naming what it does not understand."""
  text = " ".join(prompt.lower().replace(",", " ").split())
  match = re.fullmatch(r"a (smiling )?(\S+ )?face(.*)", text)
  if not match or (match.group(2) or "").strip() == "smiling":
    raise UserError(
      f"prompt {prompt!r} must start 'a face' or 'a smiling face' (see hdb_jax.world)"
    )
  values = {"expression": "smile" if match.group(1) else "neutral"}
  rest = match.group(3).strip()
  for name in ("headwear", "glasses", "background", "style"):
    for value, phrase in _PHRASES[name].items():
      if rest.startswith(phrase):
        values[name], rest = value, rest[len(phrase) :].strip()
        break
  if rest:
    known = "; ".join(p for phrases in _PHRASES.values() for p in phrases.values())
    raise UserError(f"prompt {prompt!r}: cannot read {rest!r} (in this order, any of: {known})")
  return Scene(**values)


def caption_words() -> tuple[str, ...]:
  """Every word of the caption grammar (for a tokenizer that keeps each whole)."""
  words = {"a", "smiling", "face"}
  for phrases in _PHRASES.values():
    for phrase in phrases.values():
      words.update(phrase.replace("-", " ").split())
  return tuple(sorted(words))


def attribute_indices(scene: Scene) -> list[int]:
  """Each attribute's value as its index in ATTRIBUTES[name], in ATTRIBUTES order."""
  return [ATTRIBUTES[name].index(getattr(scene, name)) for name in ATTRIBUTES]
