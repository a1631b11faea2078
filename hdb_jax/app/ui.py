"""The app's page (gradio Blocks) over a PersonalizationService: photo -> identity, images and
downloads; identity -> more images.

    app = build_app(service, files, faces)     # faces: {name: PNG bytes} offered as examples
    app.queue(...).launch(...)                 # hdb_jax.app.__main__ does this

Errors the user can fix (a bad upload, an identity for another model, empty prompts) come back as
a message in the page's status line; the server keeps serving.
"""

import os
import time
from typing import Any, Callable

import gradio as gr
import numpy as np

from hdb_jax.app.files import SessionFiles
from hdb_jax.errors import UserError
from hdb_jax.export import export_identity
from hdb_jax.formats import identity as identity_lib
from hdb_jax.serve.service import PersonalizationService, with_queue_time

YOUR_PHOTO = "(your photo)"
EXPORTS = ("diffusers", "kohya")
TIMING_NAMES = (
  ("queue_s", "queue"),
  ("predict_s", "predict"),
  ("finetune_s", "finetune"),
  ("compile_s", "compile"),
  ("sample_s", "sample"),
)


def parse_prompts(text: str) -> list[str]:
  """One prompt per line (blank lines dropped); a prompt without '{token}' gets none added."""
  return [line.strip() for line in (text or "").splitlines() if line.strip()]


def gallery(images: np.ndarray, prompts: list[str]) -> list[tuple[np.ndarray, str]]:
  """images [prompts, samples, H, W, 3] -> gallery items (image, its prompt)."""
  return [(image, prompt) for own, prompt in zip(images, prompts) for image in own]


def timings_line(timings: dict[str, float]) -> str:
  parts = [f"{label} {timings[key]:.2f} s" for key, label in TIMING_NAMES if key in timings]
  return " · ".join(parts)


def _problem(error: Exception) -> str:
  return f"**Could not do that:** {error}"


class AppHandlers:
  """The page's event handlers: plain functions of the inputs, testable without a browser."""

  def __init__(self, service: PersonalizationService, files: SessionFiles, faces: dict[str, bytes]):
    self.service, self.files, self.faces = service, files, faces
    self.personalizer = service.personalizer
    self.timeout_s = float(self.personalizer.config.request_timeout_s)

  def photo_bytes(self, upload: bytes | None, face: str) -> tuple[bytes, str]:
    """(encoded photo, its name): the upload, else the chosen world face."""
    if upload:
      return upload, "your upload"
    if face and face != YOUR_PHOTO:
      if face not in self.faces:
        raise UserError(f"no world face named {face!r}")
      return self.faces[face], face
    raise UserError("upload a face photo or pick a world face")

  def preview(self, upload: bytes | None, face: str) -> np.ndarray | None:
    """The photo as the model will see it (uint8 [R, R, 3]), or None if there is none or it is
    unusable (personalize says why)."""
    try:
      data, name = self.photo_bytes(upload, face)
      photo = self.personalizer.prepare_photo(data, name)
    except UserError:
      return None
    return np.asarray(np.round((photo + 1.0) * 127.5), np.uint8)

  def personalize(
    self,
    upload: bytes | None,
    face: str,
    prompts_text: str,
    session: str,
    progress: Callable[[float, str], Any] | None = None,
  ) -> tuple[list, list[str] | None, str, str | None]:
    """-> (gallery items, download paths, status markdown, identity path for 'more images')."""
    try:
      data, name = self.photo_bytes(upload, face)
      photo = self.personalizer.prepare_photo(data, name)
      prompts = parse_prompts(prompts_text)
      state: dict[str, Any] = {"stage": "queued", "fraction": 0.0}
      future = self.service.submit(
        photo, prompts, lambda stage, fraction: state.update(stage=stage, fraction=fraction)
      )
      deadline = time.monotonic() + self.timeout_s
      while not future.done():
        if time.monotonic() > deadline:
          future.cancel()
          raise UserError(f"no result within {self.timeout_s:.0f} s; try again later")
        if progress is not None:
          progress(state["fraction"], state["stage"])
        time.sleep(0.2)
      result = with_queue_time(future.result())
    except UserError as e:
      return [], None, _problem(e), None
    out = self.files.new_dir(session)
    identity_path = os.path.join(out, "identity.safetensors")
    identity_lib.save(identity_path, result.identity)
    downloads = [identity_path]
    for fmt in EXPORTS:
      written = export_identity(result.identity, fmt, os.path.join(out, fmt))
      lora = next(p for p in written if p.endswith(".safetensors"))
      # a name that says what it is once downloaded (diffusers finds the one .safetensors in a
      # folder, or takes weight_name=)
      downloads.append(os.path.join(out, f"lora_{fmt}.safetensors"))
      os.replace(lora, downloads[-1])
    together = (
      f"personalized together with {result.batch_size - 1} other photo(s) in batch "
      f"{result.batch_id}"
      if result.batch_size > 1
      else f"batch {result.batch_id}"
    )
    status = (
      f"**{name}** personalized ({together}, padded to {result.padded_to}). "
      f"{timings_line(result.timings)}. Identity: "
      f"{os.path.getsize(identity_path) / 1024:.0f} KB."
    )
    return gallery(result.images, result.prompts), downloads, status, identity_path

  def generate(
    self, identity_upload: bytes | None, identity_path: str | None, prompts_text: str, session: str
  ) -> tuple[list, str]:
    """More images of an uploaded identity file, else of this session's last identity."""
    try:
      if identity_upload:
        path = os.path.join(self.files.new_dir(session), "uploaded.safetensors")
        with open(path, "wb") as f:
          f.write(identity_upload)
      elif identity_path and self.files.contains(identity_path) and os.path.isfile(identity_path):
        path = identity_path  # this session's last identity (server-side state, never a path
        # from the browser; checked anyway)
      else:
        raise UserError("personalize a photo first, or upload an identity file")
      identity = identity_lib.load(path)
      prompts = parse_prompts(prompts_text)
      start = time.perf_counter()
      images = self.personalizer.generate(identity, prompts)
    except UserError as e:
      return [], _problem(e)
    return gallery(images, prompts), f"sampled in {time.perf_counter() - start:.2f} s"


def build_app(
  service: PersonalizationService, files: SessionFiles, faces: dict[str, bytes]
) -> gr.Blocks:
  """The Blocks page; launch it with hdb_jax.app.__main__ (or .queue().launch() yourself)."""
  handlers = AppHandlers(service, files, faces)
  config = service.personalizer.config
  default_prompts = "\n".join(config.prompts)
  # gradio's own copies of served files go after the same time limit as the session's
  cache = (600, int(config.files_ttl_s))
  with gr.Blocks(title="hdb_jax: HyperDreamBooth", delete_cache=cache) as app:
    gr.Markdown(
      "# hdb_jax: one photo, a personalized model\n"
      f"{service.personalizer.describe()}. Photos that arrive together are personalized in one "
      "batched run. Write prompts one per line; `{token}` stands for the person."
    )
    with gr.Tab("Personalize"):
      with gr.Row():
        with gr.Column():
          upload = gr.File(label="Face photo (PNG/JPEG)", type="binary", elem_id="photo")
          face = gr.Dropdown(
            [YOUR_PHOTO, *faces], value=YOUR_PHOTO, label="or a world face", elem_id="face"
          )
          photo = gr.Image(label="The photo the model sees", interactive=False, height=160)
          prompts = gr.Textbox(default_prompts, lines=4, label="Prompts", elem_id="prompts")
          run = gr.Button("Personalize", variant="primary", elem_id="personalize")
        with gr.Column():
          images = gr.Gallery(
            label="Images", columns=4, height=320, object_fit="contain", format="png",
            elem_id="gallery",
          )  # fmt: skip
          status = gr.Markdown(elem_id="status")
          downloads = gr.File(
            label="Identity, diffusers LoRA, kohya LoRA", file_count="multiple", elem_id="files"
          )
      identity = gr.State(None)
    with gr.Tab("More images"):
      with gr.Row():
        with gr.Column():
          identity_upload = gr.File(
            label="An identity file (else this session's last)", type="binary"
          )
          more_prompts = gr.Textbox(default_prompts, lines=4, label="Prompts")
          more = gr.Button("Generate", variant="primary")
        with gr.Column():
          more_images = gr.Gallery(
            label="Images", columns=4, height=320, object_fit="contain", format="png"
          )
          more_status = gr.Markdown()

    # gradio injects the progress tracker through this default (its documented way)
    def on_personalize(
      upload,
      face,
      prompts_text,
      request: gr.Request,
      progress=gr.Progress(),  # noqa: B008
    ):
      return handlers.personalize(
        upload, face, prompts_text, request.session_hash or "anonymous",
        lambda fraction, stage: progress(fraction, desc=stage),
      )  # fmt: skip

    def on_generate(identity_upload, identity_path, prompts_text, request: gr.Request):
      return handlers.generate(
        identity_upload, identity_path, prompts_text, request.session_hash or "anonymous"
      )

    for source in (upload, face):
      source.change(handlers.preview, [upload, face], photo, show_progress="hidden")
    run.click(
      on_personalize,
      [upload, face, prompts],
      [images, downloads, status, identity],
      api_name="personalize",
      concurrency_limit=service.personalizer.max_batch,
    )
    more.click(
      on_generate,
      [identity_upload, identity, more_prompts],
      [more_images, more_status],
      api_name="generate",
    )
  return app
