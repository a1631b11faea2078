"""What the world model draws, measured by the world recognizer; and scoring any images.

    report = measure_quality(sd, recognizer)   # World-prompt of samples, Frechet distance, VAE PSNR
    scores = score_images(recognizer, reference, images, prompt="a face wearing a red hat")

World-prompt accuracy: the fraction of (sample, attribute) pairs where the recognizer reads the
value the prompt asks for (a prompt leaves an attribute at its default by not naming it); 'named'
counts only the attributes a prompt names (a model that always draws the default scene scores 0
there).
World-ID Frechet distance (FID's formula on the recognizer's identity embeddings): how far the
samples' distribution is from renders of the same prompts; renders of other identities give its
floor and uniform noise its control. (A per-image 'is a face' rate from the nearest gallery
identity did not work: noise images came as close to some identity as renders do.)
Sharpness: the samples' Laplacian and gradient energy (mean squared second / first differences of
the grey image) as a fraction of the renders' of the same prompts (1: as sharp as the ground truth).
Face colour: the mean RGB of the face's centre (FACE_CENTRE, where every view puts skin) of samples
against renders of the same prompts, and their per-prompt RMS difference in 8-bit levels (renders
of other identities give its floor): a model that shifts skin colour, which the judge reads first,
shows here.
The judge (never trained on or selected with): 'a face of some identity': the judge reads a face's
parameters from the image and the face of those parameters is re-rendered in the prompt's scene;
the image passes when the judge scores it against that re-render above the impostor threshold
(FAR 1% among renders of other identities). Renders give the ceiling, uniform noise the control.
VAE: PSNR of held-out renders through encoder and decoder.
"""

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
import scipy.linalg

from hdb_jax import models
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.io.images import image_grid, to_uint8
from hdb_jax.world.truth import faces, sampling
from hdb_jax.world.truth.render import render, render_params
from hdb_jax.world.truth.scene import ATTRIBUTES, Scene, attribute_indices, caption, parse_prompt

# DDIM at guidance 7.5 (SD's default): chosen on noise seeds 1000-1003, not the card's 0-7; at 6,500
# UNet steps World-prompt over every attribute / the named ones read 0.765 / 0.875 at 3, 0.843 /
# 0.893 at 5, 0.875 / 0.884 at 7.5, 0.892 / 0.866 at 10
QUALITY_SAMPLING = SamplingConfig(steps=25, guidance=7.5)


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
  """{'per_attribute': {name: accuracy}, 'mean': accuracy over every (image, attribute), 'named':
  accuracy over the (image, attribute) pairs whose prompt names a value (not the default),
  'all_correct': fraction of images with every attribute right} of images [N, H, W, 3] against
  their prompts [N] (caption grammar; any token before 'face' is ignored)."""
  right = attributes_right(recognizer, images, prompts)
  named = np.asarray([attribute_indices(parse_prompt(p)) for p in prompts]) != 0
  return {
    "per_attribute": {name: float(right[:, k].mean()) for k, name in enumerate(ATTRIBUTES)},
    "mean": float(right.mean()),
    "named": float(right[named].mean()) if named.any() else float("nan"),
    "all_correct": float(right.all(axis=1).mean()),
  }


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """The Frechet distance between Gaussians fitted to features a [N, D] and b [M, D] (FID's
  formula): |mean_a - mean_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))."""
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov_a @ cov_b).real
  mean_gap = np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2)
  return float(mean_gap + np.trace(cov_a + cov_b - 2 * root))


def sharpness(images: np.ndarray) -> dict[str, float]:
  """{'laplacian', 'gradient'}: mean squared 4-neighbour Laplacian and mean squared finite
  difference of images uint8 [N, H, W, 3] as grey levels."""
  grey = images.astype(np.float64).mean(axis=-1)
  lap = (grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
         - 4 * grey[:, 1:-1, 1:-1])  # fmt: skip
  grad = np.square(np.diff(grey, axis=1)).mean() + np.square(np.diff(grey, axis=2)).mean()
  return {"laplacian": float(np.square(lap).mean()), "gradient": float(grad)}


# the face's centre as fractions of the image (rows, columns): skin in every view of every identity
FACE_CENTRE = ((0.375, 0.6875), (0.34375, 0.65625))


def face_colour(images: np.ndarray) -> np.ndarray:
  """float [N, 3]: each image's mean RGB (8-bit levels) over FACE_CENTRE; images uint8
  [N, H, W, 3]."""
  (top, bottom), (left, right) = FACE_CENTRE
  h, w = images.shape[1:3]
  window = images[:, int(top * h) : int(bottom * h), int(left * w) : int(right * w)]
  return window.astype(np.float64).mean(axis=(1, 2))


def face_colour_report(
  images: np.ndarray, renders: np.ndarray, other_renders: np.ndarray, prompts: Sequence[str]
) -> dict[str, Any]:
  """Face colour of images against renders of the same prompts (all [N, H, W, 3], prompts [N]):
  the mean RGB of each, and per set the RMS over prompts and channels of its per-prompt mean's
  difference from the renders' ('renders': other identities, the floor)."""
  reference = face_colour(renders)
  names = sorted(set(prompts))
  keys = np.asarray([names.index(p) for p in prompts])

  def per_prompt(colours: np.ndarray) -> np.ndarray:  # [P, 3]
    return np.stack([colours[keys == k].mean(axis=0) for k in range(len(names))])

  report = {"mean_rgb": {"renders": [float(v) for v in reference.mean(axis=0)]}, "rms_error": {}}
  for name, group in (("samples", images), ("renders", other_renders)):
    colours = face_colour(group)
    report["mean_rgb"][name] = [float(v) for v in colours.mean(axis=0)]
    gap = per_prompt(colours) - per_prompt(reference)
    report["rms_error"][name] = float(np.sqrt(np.square(gap).mean()))
  return report


def rerender_similarity(
  judge: Any, images: np.ndarray, prompts: Sequence[str], data_seed: int = 0
) -> np.ndarray:
  """float [N]: the judge's similarity of each image [N, H, W, 3] to the face of the parameters
  it reads there, re-rendered in the image's prompt's scene (a plain view)."""
  return _rerender_scores(judge, judge.embed(images), judge.face_params(images), prompts,
                          images.shape[1], data_seed)  # fmt: skip


def _rerender_scores(
  judge: Any,
  embedded: np.ndarray,
  params: np.ndarray,
  prompts: Sequence[str],
  resolution: int,
  data_seed: int,
) -> np.ndarray:
  """float [N]: the judge's similarity of images it embedded [N, D] to the faces of params [N,
  NUM_PARAMS], each rendered in its prompt's scene."""
  rerenders = faces_in_scenes(params, prompts, resolution, data_seed)
  return np.sum(embedded * judge.embed(rerenders), axis=-1)


def faces_in_scenes(
  params: np.ndarray, prompts: Sequence[str], resolution: int, data_seed: int
) -> np.ndarray:
  """uint8 [N, R, R, 3]: the faces of params [N, NUM_PARAMS], each in its prompt's scene, in a
  plain view."""
  return np.stack([render_params(p, faces.View(), parse_prompt(prompt), resolution,
                                 np.random.default_rng([data_seed, k, 0xB7]))
                   for k, (p, prompt) in enumerate(zip(params, prompts))])  # fmt: skip


def face_rate(
  judge: Any, samples: np.ndarray, renders: np.ndarray, prompts: Sequence[str], data_seed: int = 0
) -> dict[str, Any]:
  """The judge's 'a face of some identity' rate of samples, renders (the ceiling) and noise (the
  control) [N, H, W, 3] of the same prompts [N], at the impostor threshold (FAR 1%: re-renders
  matched against the previous image's face)."""
  embedded, params, side = judge.embed(renders), judge.face_params(renders), renders.shape[1]
  # each render against the face the judge reads in another render
  impostor = _rerender_scores(judge, embedded, np.roll(params, 1, axis=0), prompts, side, data_seed)
  threshold = float(np.quantile(impostor, 0.99))
  noise = np.random.default_rng(1).integers(0, 256, samples.shape, dtype=np.uint8)
  scores = {
    "samples": rerender_similarity(judge, samples, prompts, data_seed),
    "renders": _rerender_scores(judge, embedded, params, prompts, side, data_seed),
    "noise": rerender_similarity(judge, noise, prompts, data_seed),
  }
  return {"threshold": threshold,
          "rate": {name: float(np.mean(s > threshold)) for name, s in scores.items()}}  # fmt: skip


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
  sd: models.StableDiffusion,
  prompts: Sequence[str],
  seeds: int,
  sampling_config: SamplingConfig,
  first_seed: int = 0,
) -> np.ndarray:
  """uint8 [len(prompts), seeds, H, W, 3]: each prompt from the noise of seeds first_seed, ...,
  first_seed + seeds - 1."""
  sample = make_sampler(sd, sampling_config)
  uncond = models.tokenize(sd, [""], allow_empty=True)
  rows = []
  for prompt in prompts:
    cond = np.repeat(models.tokenize(sd, [prompt]), seeds, axis=0)
    images = sample(sd.params, None, cond, np.repeat(uncond, seeds, axis=0),
                    np.arange(first_seed, first_seed + seeds, dtype=np.int32))  # fmt: skip
    rows.append(to_uint8(images))
  return np.stack(rows)


def measure_quality(
  sd: models.StableDiffusion,
  recognizer: Any,
  seeds: int = 8,
  sampling_config: SamplingConfig = QUALITY_SAMPLING,
  data_seed: int = 0,
  first_seed: int = 0,
  judge: Any = None,
) -> tuple[dict[str, Any], np.ndarray]:
  """(report, grid image uint8) of the world model's samples for quality_prompts() x seeds (noise
  seeds first_seed, ...); the grid has a row per prompt: a render of it, then the samples. With a
  judge, the report adds its 'a face of some identity' rates (face_rate)."""
  prompts = quality_prompts()
  samples = draw_samples(sd, prompts, seeds, sampling_config, first_seed)
  flat = samples.reshape((-1,) + samples.shape[2:])
  flat_prompts = [p for p in prompts for _ in range(seeds)]

  def renders_of(start: int) -> np.ndarray:  # held-out identities, one per sample
    identities = sampling.held_out_identities(len(flat_prompts), start=start)
    return np.stack([render(i, 3, parse_prompt(p), sd.resolution, data_seed)
                     for i, p in zip(identities, flat_prompts)])  # fmt: skip

  renders, other_renders = renders_of(30000), renders_of(40000)
  noise = np.random.default_rng(0).integers(0, 256, flat.shape, dtype=np.uint8)
  reference = recognizer.embed(renders)
  reference_sharpness = sharpness(renders)
  report = {
    "samples": len(flat),
    "prompts": len(prompts),
    "sampling": {**dataclasses.asdict(sampling_config), "first_seed": first_seed},
    "world_prompt_samples": prompt_accuracy(recognizer, flat, flat_prompts),
    "world_prompt_renders": prompt_accuracy(recognizer, renders, flat_prompts),
    # None below more samples than embedding dimensions: the covariances would be singular
    "frechet_world_id": {
      name: frechet_distance(recognizer.embed(images), reference)
      if len(flat) > reference.shape[1]
      else None
      for name, images in (("samples", flat), ("renders", other_renders), ("noise", noise))
    },  # fmt: skip
    "sharpness": {
      name: {k: v / max(reference_sharpness[k], 1e-12) for k, v in sharpness(images).items()}
      for name, images in (("samples", flat), ("renders", other_renders))
    },  # fractions of the renders' of the same prompts (renders: other identities)
    "face_colour": face_colour_report(flat, renders, other_renders, flat_prompts),
    "vae_psnr_db": vae_psnr(sd, 64, data_seed),
  }
  if judge is not None:
    report["judge_face_rate"] = face_rate(judge, flat, renders, flat_prompts, data_seed)
  # a row per prompt: a render of it (another identity), then the samples
  rows = np.concatenate([renders.reshape(samples.shape)[:, :1], samples], axis=1)
  return report, image_grid(rows.reshape((-1,) + rows.shape[2:]), seeds + 1)


def similarity_to(network: Any, reference: np.ndarray, images: np.ndarray) -> np.ndarray:
  """float [N]: the cosine similarity of each image's embedding to the reference's, by a
  recognizer or the judge; reference uint8 [H, W, 3], images uint8 [N, H', W', 3]."""
  embeddings = network.embed(np.concatenate([reference[None], images]))
  return embeddings[1:] @ embeddings[0]


def score_images(
  recognizer: Any, reference: np.ndarray, images: np.ndarray, prompt: str | None = None
) -> dict[str, Any]:
  """{'similarity': [N] World-ID cosine of each image to the reference, 'read': [N] dicts of the
  attributes read, and with a prompt 'world_prompt': prompt_accuracy of the images}.
  reference uint8 [H, W, 3]; images uint8 [N, H', W', 3]."""
  read = recognizer.read(images)
  out = {
    "similarity": similarity_to(recognizer, reference, images).tolist(),
    "read": [
      {name: ATTRIBUTES[name][read[name][i]] for name in ATTRIBUTES} for i in range(len(images))
    ],  # fmt: skip
  }
  if prompt is not None:
    out["world_prompt"] = prompt_accuracy(recognizer, images, [prompt] * len(images))
  return out
