"""The recognizer's networks and its file: two CNNs over 64 px images, fp16 safetensors + JSON.

recognizer = load_recognizer()                 # the shipped one (or load_recognizer(DIR))
embeddings = recognizer.embed(images)          # uint8 [N, H, W, 3] -> float32 [N, D], unit norm
read = recognizer.read(images)                 # {attribute: int32 [N] value index}
"""

import dataclasses
import functools
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from hdb_jax.errors import MissingFileError, UserError
from hdb_jax.io.files import atomic_path, file_sha256, write_text_atomic
from hdb_jax.world.scene import ATTRIBUTES

RESOLUTION = 64  # the networks' input side; other sizes are resized to it
WEIGHTS = "recognizer.safetensors"
INFO = "recognizer.json"
CARD = "MODEL_CARD.md"
FORMAT = "hdb_jax.world_recognizer"
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "assets",
                       "world-recognizer")  # fmt: skip
ATTRIBUTE_SIZES = tuple(len(values) for values in ATTRIBUTES.values())


class WorldCNN(nn.Module):
  """Four stride-2 stages of two 3x3 convolutions (GroupNorm, ReLU), global mean pool, a dense
  head: images float32 [N, 64, 64, 3] in [-1, 1] -> [N, outputs]."""

  outputs: int
  widths: Sequence[int] = (32, 64, 96, 128)
  # also return the last stage's feature map as tokens: ([N, outputs], [N, 16, widths[-1]])
  with_tokens: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
    for width in self.widths:
      for stride in (2, 1):
        x = nn.Conv(width, (3, 3), strides=stride, padding="SAME", use_bias=False)(x)
        x = nn.relu(nn.GroupNorm(num_groups=8)(x))
    head = nn.Dense(self.outputs)(jnp.mean(x, axis=(1, 2)))
    if self.with_tokens:
      return head, x.reshape(x.shape[0], -1, x.shape[-1])
    return head


@dataclasses.dataclass(frozen=True)
class RecognizerSpec:
  embedding_dim: int = 128
  widths: tuple[int, ...] = (32, 64, 96, 128)

  def networks(self) -> tuple[WorldCNN, WorldCNN]:
    """(World-ID: -> embedding, World-prompt: -> concatenated attribute logits)."""
    return (
      WorldCNN(self.embedding_dim, self.widths),
      WorldCNN(sum(ATTRIBUTE_SIZES), self.widths),
    )


def init_params(spec: RecognizerSpec, seed: int) -> dict[str, Any]:
  """{'id': World-ID params, 'prompt': World-prompt params}."""
  id_net, prompt_net = spec.networks()
  x = jnp.zeros((1, RESOLUTION, RESOLUTION, 3))
  id_key, prompt_key = jax.random.split(jax.random.key(seed))
  return {
    "id": id_net.init(id_key, x)["params"],
    "prompt": prompt_net.init(prompt_key, x)["params"],
  }


def split_logits(logits: jax.Array) -> list[jax.Array]:
  """[N, sum(ATTRIBUTE_SIZES)] -> one [N, size] per attribute (ATTRIBUTES order)."""
  return jnp.split(logits, np.cumsum(ATTRIBUTE_SIZES)[:-1], axis=-1)


def normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def prepare(images: Any) -> np.ndarray:
  """uint8 [N, H, W, 3] (any square H) -> float32 [N, 64, 64, 3] in [-1, 1]."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
    raise UserError(f"images must be [N, H, H, 3] (square RGB), got {images.shape}")
  if images.shape[1] != RESOLUTION:
    from PIL import Image  # pylint: disable=import-outside-toplevel

    images = np.stack([np.asarray(Image.fromarray(np.asarray(i, np.uint8)).resize(
      (RESOLUTION, RESOLUTION), Image.Resampling.BILINEAR)) for i in images])  # fmt: skip
  return images.astype(np.float32) / 127.5 - 1.0


@dataclasses.dataclass(frozen=True)
class Recognizer:
  """Trained World-ID and World-prompt networks."""

  spec: RecognizerSpec
  params: dict[str, Any]
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def _apply(self):
    id_net, prompt_net = self.spec.networks()
    embed = jax.jit(lambda p, x: normalize(id_net.apply({"params": p}, x)))
    read = jax.jit(lambda p, x: [jnp.argmax(l, -1) for l in split_logits(
      prompt_net.apply({"params": p}, x))])  # fmt: skip
    return embed, read

  def embed(self, images: Any, batch: int = 64) -> np.ndarray:
    """uint8 images [N, H, H, 3] -> World-ID embeddings float32 [N, D] of unit norm."""
    x = prepare(images)
    out = [np.asarray(self._apply[0](self.params["id"], x[i : i + batch]))
           for i in range(0, len(x), batch)]  # fmt: skip
    return np.concatenate(out)

  def read(self, images: Any, batch: int = 64) -> dict[str, np.ndarray]:
    """uint8 images [N, H, H, 3] -> {attribute: int32 [N] index into ATTRIBUTES[attribute]}."""
    x = prepare(images)
    parts = [self._apply[1](self.params["prompt"], x[i : i + batch])
             for i in range(0, len(x), batch)]  # fmt: skip
    return {name: np.concatenate([np.asarray(p[k]) for p in parts]).astype(np.int32)
            for k, name in enumerate(ATTRIBUTES)}  # fmt: skip


def save_recognizer(recognizer: Recognizer, directory: str) -> list[str]:
  """directory/{recognizer.safetensors (fp16), recognizer.json}; atomic writes."""
  os.makedirs(directory, exist_ok=True)
  flat = traverse_util.flatten_dict(jax.device_get(recognizer.params), sep="/")
  weights = os.path.join(directory, WEIGHTS)
  with atomic_path(weights) as tmp:
    save_file({k: np.asarray(v, np.float16) for k, v in flat.items()}, tmp)
  info = {"format": FORMAT, "version": 1, "spec": dataclasses.asdict(recognizer.spec),
          **recognizer.info}  # fmt: skip
  write_text_atomic(os.path.join(directory, INFO), json.dumps(info, indent=2, sort_keys=True))
  write_text_atomic(os.path.join(directory, CARD), card_markdown(info, file_sha256(weights)))
  return [weights, os.path.join(directory, INFO), os.path.join(directory, CARD)]


def card_markdown(info: dict[str, Any], weights_sha256: str) -> str:
  """MODEL_CARD.md: how the recognizer was trained and how well it knows held-out identities."""
  lines = ["# The world recognizer", "",
           "World-ID (an identity embedding) and World-prompt (which contexts and style an image "
           "shows): two small CNNs over 64 px images, fp16 safetensors.", ""]  # fmt: skip
  if "command" in info:
    training = info.get("training", {})
    lines += ["## How it was made", "", f"    {info['command']}", "",
              f"{int(training.get('steps', 0)):,} steps of batch "
              f"{info['config']['recognizer_stage']['batch_size']}, "
              f"{training.get('wall_s', 0) / 60:.1f} min, seed {info['config']['seed']}, world "
              f"seed {info['config']['data_seed']}. {info.get('note', '')}".rstrip(), "",
              f"`{WEIGHTS}` sha256 `{weights_sha256}`.", ""]  # fmt: skip
  evaluation = info.get("evaluation")
  if evaluation:
    count = info.get("config", {}).get("eval", {}).get("num_identities", "?")
    lines += ["## Held-out identities", "",
              f"World-ID: {count} identities never trained on; each one's photo (default scene) "
              "against a render of every one in a random scene of each style.", "",
              "| probe style | ROC AUC | TAR at FAR 1% |", "|---|---|---|"]  # fmt: skip
    for style, scores in evaluation["world_id"].items():
      lines.append(f"| {style} | {scores['auc']:.4f} | {scores['tar_at_far_1pct']:.3f} |")
    lines += ["", "World-prompt accuracy on held-out renders in random scenes:", "",
              "| attribute | accuracy |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.3f} |" for k, v in evaluation["world_prompt"].items()]
  return "\n".join(lines) + "\n"


def load_recognizer(directory: str | None = None) -> Recognizer:
  """The recognizer in `directory` (default: the one hdb_jax ships)."""
  directory = directory or SHIPPED
  info_path, weights = os.path.join(directory, INFO), os.path.join(directory, WEIGHTS)
  if not (os.path.exists(info_path) and os.path.exists(weights)):
    raise MissingFileError(
      f"no world recognizer in {directory} (train one: python -m hdb_jax.world.recognizer "
      "--config=configs/recognizer.py --workdir=DIR, then pass DIR/release)"
    )
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  if info.get("format") != FORMAT:
    raise UserError(f"{info_path} is not a world recognizer (format {info.get('format')!r})")
  spec = RecognizerSpec(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in info["spec"].items()})  # fmt: skip
  flat = {k: np.asarray(v, np.float32) for k, v in load_file(weights).items()}
  params = traverse_util.unflatten_dict(flat, sep="/")
  expected = jax.eval_shape(lambda: init_params(spec, 0))
  if jax.tree.structure(expected) != jax.tree.structure(params) or any(
    e.shape != p.shape for e, p in zip(jax.tree.leaves(expected), jax.tree.leaves(params))
  ):
    raise UserError(f"{weights} does not match the recognizer layout in {info_path}")
  rest = {k: v for k, v in info.items() if k not in ("format", "version", "spec")}
  return Recognizer(spec, params, rest)
