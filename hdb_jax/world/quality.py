"""What the world model draws, measured by the world recognizer; and scoring any images.

    report = measure_quality(sd, recognizer)   # World-prompt of samples, faces rate, VAE PSNR
    scores = score_images(recognizer, reference, images, prompt="a face wearing a red hat")

World-prompt accuracy: the fraction of (sample, attribute) pairs where the recognizer reads the
value the prompt asks for (a prompt leaves an attribute at its default by not naming it).
Faces: a sample counts as a face when its World-ID embedding is as close to some identity of a
gallery of renders as the least-close 5% of renders are (so renders pass at 95% by construction;
noise images are the control). VAE: PSNR of held-out renders through encoder and decoder.
"""

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from hdb_jax import models
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.io.images import image_grid, to_uint8
from hdb_jax.world import sampling
from hdb_jax.world.recognizer.verification import reference_renders
from hdb_jax.world.render import render
from hdb_jax.world.scene import ATTRIBUTES, Scene, attribute_indices, caption, parse_prompt

FACE_QUANTILE = 0.05  # renders below this quantile of gallery similarity are not counted as faces
QUALITY_SAMPLING = SamplingConfig(steps=25, guidance=3.0)  # DDIM, as the pretraining's grids


def quality_prompts() -> list[str]:
  """'a face', every single context and style value, and four combinations."""
  prompts = [caption(Scene())]
  for name, values in ATTRIBUTES.items():
    prompts += [caption(Scene(**{name: value})) for value in values[1:]]
  prompts += [
    "a smiling face wearing a red hat on a beach",
    "a face with sunglasses in a city in pop-art style",
    "a face wearing a green hat in a forest in watercolour style",
    "a smiling face with glasses at night in pencil sketch style",
  ]
  return prompts


def attributes_right(recognizer: Any, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
  """bool [N, 5]: whether World-prompt reads each attribute (ATTRIBUTES order) of images [N, H, W,
  3] as their prompts [N] ask (caption grammar; any token before 'face' is ignored); one read."""
  read = recognizer.read(images)
  wanted = np.asarray([attribute_indices(parse_prompt(p)) for p in prompts])
  return np.stack([read[name] == wanted[:, k] for k, name in enumerate(ATTRIBUTES)], axis=1)


def prompt_accuracy(recognizer: Any, images: np.ndarray, prompts: Sequence[str]) -> dict:
  """{'per_attribute': {name: accuracy}, 'mean': accuracy over every (image, attribute),
  'all_correct': fraction of images with every attribute right} of images [N, H, W, 3] against
  their prompts [N] (caption grammar; any token before 'face' is ignored)."""
  right = attributes_right(recognizer, images, prompts)
  return {
    "per_attribute": {name: float(right[:, k].mean()) for k, name in enumerate(ATTRIBUTES)},
    "mean": float(right.mean()),
    "all_correct": float(right.all(axis=1).mean()),
  }


def nearest_similarity(recognizer: Any, images: np.ndarray, gallery: np.ndarray) -> np.ndarray:
  """[N]: each image's highest World-ID cosine similarity to the gallery embeddings [G, D]."""
  return np.max(recognizer.embed(images) @ gallery.T, axis=1)


@dataclasses.dataclass
class FaceGallery:
  """Reference renders' embeddings and the similarity a face must reach."""

  embeddings: np.ndarray  # [G, D]
  threshold: float

  @classmethod
  def build(cls, recognizer: Any, size: int, data_seed: int, resolution: int) -> "FaceGallery":
    gallery = recognizer.embed(reference_renders(sampling.held_out_identities(size, start=5000),
                                                 resolution, data_seed))  # fmt: skip
    rng = np.random.default_rng([data_seed, 0xFACE])
    probes = np.stack([
      render(identity, 1, sampling.random_scene(rng), resolution, data_seed)
      for identity in sampling.held_out_identities(size, start=10000)
    ])  # fmt: skip
    similarity = nearest_similarity(recognizer, probes, gallery)
    return cls(gallery, float(np.quantile(similarity, FACE_QUANTILE)))

  def face_rate(self, recognizer: Any, images: np.ndarray) -> float:
    return float(np.mean(nearest_similarity(recognizer, images, self.embeddings) >= self.threshold))


def vae_psnr(sd: models.StableDiffusion, count: int, data_seed: int) -> float:
  """Mean PSNR (dB, uint8 scale) of held-out renders in random scenes through the VAE (posterior
  mean)."""
  rng = np.random.default_rng([data_seed, 0x9A])
  resolution = sd.resolution
  images = np.stack([render(i, 2, sampling.random_scene(rng), resolution, data_seed)
                     for i in sampling.held_out_identities(count, start=20000)])  # fmt: skip
  x = images.astype(np.float32) / 127.5 - 1
  roundtrip = jax.jit(lambda p, x: models.vae_decode(sd, p, models.vae_encode(sd, p, x)))
  decoded = to_uint8(np.clip((np.asarray(roundtrip(sd.params["vae"], x)) + 1) / 2, 0, 1))
  mse = np.mean((decoded.astype(np.float64) - images) ** 2, axis=(1, 2, 3))
  return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def draw_samples(
  sd: models.StableDiffusion, prompts: Sequence[str], seeds: int, sampling_config: SamplingConfig
) -> np.ndarray:
  """uint8 [len(prompts), seeds, H, W, 3]: each prompt from the noise of seeds 0..seeds-1."""
  sample = make_sampler(sd, sampling_config)
  uncond = models.tokenize(sd, [""], allow_empty=True)
  rows = []
  for prompt in prompts:
    cond = np.repeat(models.tokenize(sd, [prompt]), seeds, axis=0)
    images = sample(sd.params, None, cond, np.repeat(uncond, seeds, axis=0),
                    np.arange(seeds, dtype=np.int32))  # fmt: skip
    rows.append(to_uint8(images))
  return np.stack(rows)


def measure_quality(
  sd: models.StableDiffusion,
  recognizer: Any,
  seeds: int = 8,
  sampling_config: SamplingConfig = QUALITY_SAMPLING,
  data_seed: int = 0,
  gallery_size: int = 500,
) -> tuple[dict[str, Any], np.ndarray]:
  """(report, grid image uint8) of the world model's samples for quality_prompts() x seeds."""
  prompts = quality_prompts()
  samples = draw_samples(sd, prompts, seeds, sampling_config)
  flat = samples.reshape((-1,) + samples.shape[2:])
  flat_prompts = [p for p in prompts for _ in range(seeds)]
  gallery = FaceGallery.build(recognizer, gallery_size, data_seed, sd.resolution)
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (64,) + flat.shape[1:], dtype=np.uint8)
  renders = np.stack([render(i, 3, parse_prompt(p), sd.resolution, data_seed) for i, p in zip(
    sampling.held_out_identities(len(flat_prompts), start=30000), flat_prompts)])  # fmt: skip
  report = {
    "samples": len(flat),
    "prompts": len(prompts),
    "sampling": dataclasses.asdict(sampling_config),
    "world_prompt_samples": prompt_accuracy(recognizer, flat, flat_prompts),
    "world_prompt_renders": prompt_accuracy(recognizer, renders, flat_prompts),
    "face_rate_samples": gallery.face_rate(recognizer, flat),
    "face_rate_renders": gallery.face_rate(recognizer, renders),
    "face_rate_noise": gallery.face_rate(recognizer, noise),
    "vae_psnr_db": vae_psnr(sd, 64, data_seed),
  }
  return report, image_grid(flat, seeds)


def score_images(
  recognizer: Any, reference: np.ndarray, images: np.ndarray, prompt: str | None = None
) -> dict[str, Any]:
  """{'similarity': [N] World-ID cosine of each image to the reference, 'read': [N] dicts of the
  attributes read, and with a prompt 'world_prompt': prompt_accuracy of the images}.
  reference uint8 [H, W, 3]; images uint8 [N, H', W', 3]."""
  embeddings = recognizer.embed(np.concatenate([reference[None], images]))
  read = recognizer.read(images)
  out = {
    "similarity": (embeddings[1:] @ embeddings[0]).tolist(),
    "read": [
      {name: ATTRIBUTES[name][read[name][i]] for name in ATTRIBUTES} for i in range(len(images))
    ],  # fmt: skip
  }
  if prompt is not None:
    out["world_prompt"] = prompt_accuracy(recognizer, images, [prompt] * len(images))
  return out
