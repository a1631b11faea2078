"""The world's networks and their files (fp16 safetensors + JSON): the recognizer (World-ID and
World-prompt, two CNNs over 64 px images) and the judge (World-ID that also reads the face's
parameters, a residual CNN).

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
from hdb_jax.world.truth import check_version, version_record
from hdb_jax.world.truth.faces import NUM_PARAMS
from hdb_jax.world.truth.scene import ATTRIBUTES

RESOLUTION = 64  # the networks' input side; other sizes are resized to it
CARD = "MODEL_CARD.md"
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "assets")
# Two networks, two jobs: the recognizer (World-ID, the hypernetwork's encoder, and World-prompt)
# and the judge (identity for the tables and tests alone; another architecture and seed, trained on
# other identities). role -> (weights file, info file, format, shipped directory, title)
ROLES = {
  "recognizer": ("recognizer.safetensors", "recognizer.json", "hdb_jax.world_recognizer",
                 os.path.join(ASSETS, "world-recognizer"), "The world recognizer"),
  "judge": ("judge.safetensors", "judge.json", "hdb_jax.world_judge",
            os.path.join(ASSETS, "world-judge"), "The world judge"),
}  # fmt: skip
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


@jax.custom_vjp
def spatial_max(x: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [N, C]: the maximum over H and W, whose gradient goes to one argmax (XLA:CPU
  at backend optimization level 0, the test suite's, made jnp.max's gradient NaN here)."""
  return jnp.max(x, axis=(1, 2))


def _spatial_max_forward(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, tuple[int, ...]]]:
  flat = x.reshape(x.shape[0], -1, x.shape[-1])
  return jnp.max(x, axis=(1, 2)), (jnp.argmax(flat, axis=1), x.shape)


def _spatial_max_backward(residual: Any, g: jax.Array) -> tuple[jax.Array]:
  index, shape = residual
  hot = jax.nn.one_hot(index, shape[1] * shape[2], axis=1, dtype=g.dtype)  # [N, HW, C]
  return ((hot * g[:, None, :]).reshape(shape),)


spatial_max.defvjp(_spatial_max_forward, _spatial_max_backward)


class ResidualCNN(nn.Module):
  """The judge's architecture (unlike WorldCNN's plain stages): a 5x5 stem, then per stage a
  stride-2 3x3 convolution and a pre-norm residual block (LayerNorm, GELU), mean- and max-pooled
  into a dense head: images float32 [N, 64, 64, 3] in [-1, 1] -> [N, outputs]."""

  outputs: int
  widths: Sequence[int] = (48, 96, 160, 192)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.widths[0], (5, 5), padding="SAME")(x)
    for width in self.widths:
      x = nn.Conv(width, (3, 3), strides=2, padding="SAME")(nn.gelu(nn.LayerNorm()(x)))
      inner = nn.Conv(width, (3, 3), padding="SAME")(nn.gelu(nn.LayerNorm()(x)))
      x = x + nn.Conv(width, (3, 3), padding="SAME")(nn.gelu(nn.LayerNorm()(inner)))
    x = nn.LayerNorm()(x)
    pooled = jnp.concatenate([jnp.mean(x, axis=(1, 2)), spatial_max(x)], axis=-1)
    return nn.Dense(self.outputs)(pooled)


ARCHITECTURES = {"cnn": WorldCNN, "resnet": ResidualCNN}


@dataclasses.dataclass(frozen=True)
class RecognizerSpec:
  """architecture: 'cnn' (WorldCNN) or 'resnet' (ResidualCNN); reads_prompt: a World-prompt
  network beside World-ID; face_params: World-ID also regresses the face's ground-truth
  parameters (faces.PARAM_NAMES), after its embedding."""

  embedding_dim: int = 128
  widths: tuple[int, ...] = (32, 64, 96, 128)
  architecture: str = "cnn"
  reads_prompt: bool = True
  face_params: bool = False

  def __post_init__(self):
    if self.architecture not in ARCHITECTURES:
      raise UserError(f"architecture must be one of {sorted(ARCHITECTURES)}, not "
                      f"{self.architecture!r}")  # fmt: skip

  def networks(self) -> tuple[nn.Module, nn.Module | None]:
    """(World-ID: -> embedding [+ face parameters], World-prompt: -> concatenated attribute logits,
    or None without reads_prompt)."""
    make = ARCHITECTURES[self.architecture]
    id_outputs = self.embedding_dim + (NUM_PARAMS if self.face_params else 0)
    prompt = make(sum(ATTRIBUTE_SIZES), self.widths) if self.reads_prompt else None
    return make(id_outputs, self.widths), prompt


def init_params(spec: RecognizerSpec, seed: int) -> dict[str, Any]:
  """{'id': World-ID params[, 'prompt': World-prompt params]}."""
  id_net, prompt_net = spec.networks()
  x = jnp.zeros((1, RESOLUTION, RESOLUTION, 3))
  id_key, prompt_key = jax.random.split(jax.random.key(seed))
  params = {"id": id_net.init(id_key, x)["params"]}
  if prompt_net is not None:
    params["prompt"] = prompt_net.init(prompt_key, x)["params"]
  return params


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
  """Trained World-ID (and World-prompt) networks: the recognizer's or the judge's (role)."""

  spec: RecognizerSpec
  params: dict[str, Any]
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  role: str = "recognizer"

  @functools.cached_property
  def _apply(self):
    id_net, prompt_net = self.spec.networks()
    dim = self.spec.embedding_dim
    embed = jax.jit(lambda p, x: normalize(id_net.apply({"params": p}, x)[:, :dim]))
    face = jax.jit(lambda p, x: jax.nn.sigmoid(id_net.apply({"params": p}, x)[:, dim:]))
    read = None
    if prompt_net is not None:
      read = jax.jit(lambda p, x: [jnp.argmax(l, -1) for l in split_logits(
        prompt_net.apply({"params": p}, x))])  # fmt: skip
    return embed, read, face

  def _batched(self, fn: Any, params: Any, images: Any, batch: int) -> list[Any]:
    x = prepare(images)
    return [fn(params, x[i : i + batch]) for i in range(0, len(x), batch)]

  def embed(self, images: Any, batch: int = 64) -> np.ndarray:
    """uint8 images [N, H, H, 3] -> World-ID embeddings float32 [N, D] of unit norm."""
    parts = self._batched(self._apply[0], self.params["id"], images, batch)
    return np.concatenate([np.asarray(p) for p in parts])

  def face_params(self, images: Any, batch: int = 64) -> np.ndarray:
    """uint8 images [N, H, H, 3] -> the face parameters it reads, float32 [N, NUM_PARAMS] in
    [0, 1] (faces.PARAM_NAMES order); only a network trained with face_params has them."""
    if not self.spec.face_params:
      raise UserError(f"this {self.role} was not trained to read face parameters")
    parts = self._batched(self._apply[2], self.params["id"], images, batch)
    return np.concatenate([np.asarray(p) for p in parts])

  def read(self, images: Any, batch: int = 64) -> dict[str, np.ndarray]:
    """uint8 images [N, H, H, 3] -> {attribute: int32 [N] index into ATTRIBUTES[attribute]}."""
    if self._apply[1] is None:
      raise UserError(f"this {self.role} has no World-prompt network")
    parts = self._batched(self._apply[1], self.params["prompt"], images, batch)
    return {name: np.concatenate([np.asarray(p[k]) for p in parts]).astype(np.int32)
            for k, name in enumerate(ATTRIBUTES)}  # fmt: skip


def save_recognizer(recognizer: Recognizer, directory: str) -> list[str]:
  """directory/{<role>.safetensors (fp16), <role>.json, MODEL_CARD.md}; atomic writes."""
  weights_name, info_name, file_format, _, _ = ROLES[recognizer.role]
  os.makedirs(directory, exist_ok=True)
  flat = traverse_util.flatten_dict(jax.device_get(recognizer.params), sep="/")
  weights = os.path.join(directory, weights_name)
  with atomic_path(weights) as tmp:
    save_file({k: np.asarray(v, np.float16) for k, v in flat.items()}, tmp)
  info = {"format": file_format, "version": 1, **version_record(),
          "spec": dataclasses.asdict(recognizer.spec), **recognizer.info}  # fmt: skip
  write_text_atomic(os.path.join(directory, info_name),
                    json.dumps(info, indent=2, sort_keys=True))  # fmt: skip
  card = card_markdown(recognizer.role, info, file_sha256(weights))
  write_text_atomic(os.path.join(directory, CARD), card)
  return [weights, os.path.join(directory, info_name), os.path.join(directory, CARD)]


def card_markdown(role: str, info: dict[str, Any], weights_sha256: str) -> str:
  """MODEL_CARD.md: how the network was trained and how well it knows held-out identities."""
  weights_name, title = ROLES[role][0], ROLES[role][4]
  spec = info.get("spec", {})
  jobs = ("World-ID (an identity embedding) and World-prompt (which contexts and style an image "
          "shows): two small CNNs" if spec.get("reads_prompt", True) else
          "An identity embedding and the face's ground-truth parameters, read by one "
          f"{spec.get('architecture', 'cnn')} network")  # fmt: skip
  lines = [f"# {title}", "", f"{jobs} over 64 px images of world v{info.get('world_version', 1)}"
           ", fp16 safetensors.", ""]  # fmt: skip
  if "command" in info:
    training = info.get("training", {})
    config = info["config"]
    lines += ["## How it was made", "", f"    {info['command']}", "",
              f"{int(training.get('steps', 0)):,} steps of batch "
              f"{config['recognizer_stage']['batch_size']}, "
              f"{training.get('wall_s', 0) / 60:.1f} min, seed {config['seed']}, world "
              f"seed {config['data_seed']}, training identities "
              f"{config.get('first_identity', 0):,} to "
              f"{config.get('first_identity', 0) + config['num_identities'] - 1:,}. "
              f"{info.get('note', '')}".rstrip(), "",
              f"`{weights_name}` sha256 `{weights_sha256}`.", ""]  # fmt: skip
  evaluation = info.get("evaluation")
  if evaluation:
    lines += verification_markdown(evaluation, info.get("config", {}))
  return "\n".join(lines) + "\n"


def verification_markdown(evaluation: dict[str, Any], config: dict[str, Any]) -> list[str]:
  """The card's held-out section: verification per style, then (where measured) calibration,
  face-parameter recovery and World-prompt accuracy."""
  count = config.get("eval", {}).get("num_identities", "?")
  lines = ["## Held-out identities", "",
           f"World-ID: {count} identities never trained on; each one's photo (default scene) "
           "against a render of every one in a random scene of each style.", "",
           "| probe style | ROC AUC | TAR at FAR 1% |", "|---|---|---|"]  # fmt: skip
  for style, scores in evaluation["world_id"].items():
    lines.append(f"| {style} | {scores['auc']:.4f} | {scores['tar_at_far_1pct']:.3f} |")
  calibration = evaluation.get("calibration")
  if calibration:
    lines += ["", "Calibration (cosine similarity to the reference photo, mean [5th, 95th "
              "percentile]):", "", "| probe | similarity |", "|---|---|"]  # fmt: skip
    for name, entry in calibration["probes"].items():
      lines.append(f"| {name} | {entry['mean']:+.3f} [{entry['p5']:+.3f}, {entry['p95']:+.3f}] |")
    lines += ["", f"Top-1 identification among the {count} identities (the probe's nearest "
              "reference is its own): " + ", ".join(f"{k} {v:.3f}" for k, v in
              calibration["top1"].items()) + "."]  # fmt: skip
  recovery = evaluation.get("face_params")
  if recovery:
    lines += ["", "Face parameters read from held-out renders (R² per parameter; categories: "
              "accuracy of the bin):", "", "| parameter | recovered |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.3f} |" for k, v in recovery.items()]
  if evaluation.get("world_prompt"):
    lines += ["", "World-prompt accuracy on held-out renders in random scenes:", "",
              "| attribute | accuracy |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.3f} |" for k, v in evaluation["world_prompt"].items()]
  return lines


def load_recognizer(directory: str | None = None, role: str = "recognizer") -> Recognizer:
  """The network of `role` in `directory` (default: the one hdb_jax ships); one made for another
  world version is refused."""
  weights_name, info_name, file_format, shipped, title = ROLES[role]
  directory = directory or shipped
  info_path, weights = os.path.join(directory, info_name), os.path.join(directory, weights_name)
  if not (os.path.exists(info_path) and os.path.exists(weights)):
    raise MissingFileError(
      f"no world {role} in {directory} (train one: python -m hdb_jax.world.recognizer "
      f"--config=configs/{role}.py --workdir=DIR, then pass DIR/release)"
    )
  with open(info_path, encoding="utf-8") as f:
    info = json.load(f)
  if info.get("format") != file_format:
    raise UserError(f"{info_path} is not a {title[4:]} (format {info.get('format')!r})")
  check_version(info, info_path)
  spec = RecognizerSpec(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in info["spec"].items()})  # fmt: skip
  flat = {k: np.asarray(v, np.float32) for k, v in load_file(weights).items()}
  params = traverse_util.unflatten_dict(flat, sep="/")
  expected = jax.eval_shape(lambda: init_params(spec, 0))
  if jax.tree.structure(expected) != jax.tree.structure(params) or any(
    e.shape != p.shape for e, p in zip(jax.tree.leaves(expected), jax.tree.leaves(params))
  ):
    raise UserError(f"{weights} does not match the {role} layout in {info_path}")
  rest = {k: v for k, v in info.items() if k not in ("format", "version", "spec")}
  return Recognizer(spec, params, rest, role)


def load_judge(directory: str | None = None) -> Recognizer:
  """The world judge in `directory` (default: the shipped one): identity for the tables and tests
  only, never trained on or selected with."""
  return load_recognizer(directory, role="judge")
