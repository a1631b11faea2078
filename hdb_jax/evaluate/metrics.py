"""The paper's metrics as pure functions of embeddings (numpy).

- CLIP-T: cosine(CLIP image embedding of a generated image, CLIP text embedding of its prompt with
  the identifier token removed: "a {token} face on the beach" -> "a face on the beach").
- CLIP-I: cosine(CLIP image embedding of a generated image, that of the identity's reference photo).
- DINO: cosine(DINO ViT-S/16 last-layer CLS token of a generated image, that of the reference
  photo).
- Face Rec: cosine of 128-d dlib face descriptors of the generated image and the reference photo
  (hdb_jax.evaluate.faces); 0 where no face is found in either.
Every value lies in [-1, 1]; means are over identities x prompts x samples.
"""

import re
from typing import Sequence

import numpy as np

METRICS = ("clip_t", "clip_i", "dino", "face_rec")
METRIC_NAMES = {"clip_t": "CLIP-T", "clip_i": "CLIP-I", "dino": "DINO", "face_rec": "Face Rec"}


def cosine_similarity(x: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> np.ndarray:
  """Cosine similarity along the last axis, broadcasting the others; values clipped to [-1, 1]."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  norms = np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), eps)
  return np.clip(np.sum(x * y, axis=-1) / norms, -1.0, 1.0)


def similarity_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """[N, D], [M, D] -> [N, M] cosine similarities."""
  return cosine_similarity(np.asarray(x)[:, None, :], np.asarray(y)[None, :, :])


def face_similarities(
  generated: Sequence[np.ndarray | None], reference: np.ndarray | None
) -> np.ndarray:
  """Face Rec per generated image: cosine of descriptors, 0 where a face is missing on either
  side."""
  return np.asarray(
    [
      0.0 if g is None or reference is None else float(cosine_similarity(g, reference))
      for g in generated
    ]
  )


def prompt_without_token(prompt: str) -> str:
  """The CLIP-T text: the prompt with '{token}' (and the space it leaves) removed."""
  return re.sub(r"\s+", " ", prompt.replace("{token}", "")).strip()


def score_identity(
  clip_images: np.ndarray,
  clip_texts: np.ndarray,
  clip_reference: np.ndarray,
  dino_images: np.ndarray,
  dino_reference: np.ndarray,
) -> dict[str, np.ndarray]:
  """One identity's CLIP-T, CLIP-I and DINO values [P, S].

  clip_images, dino_images: [P, S, D] (prompts x samples); clip_texts [P, D]; references [D].
  """
  return {
    "clip_t": cosine_similarity(clip_images, clip_texts[:, None, :]),
    "clip_i": cosine_similarity(clip_images, clip_reference),
    "dino": cosine_similarity(dino_images, dino_reference),
  }


def mean_of(values: Sequence[float] | np.ndarray) -> float:
  values = np.asarray(values, np.float64)
  return float(values.mean()) if values.size else float("nan")
