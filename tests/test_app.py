"""The web app on the world model, served for real on a local port and driven as users drive it:
through gradio_client (personalize, downloads that load in this project and in PyTorch diffusers,
more images, two users at once in one batch, bad uploads), and through a real headless Chromium
(upload, personalize, the gallery's images load, a screenshot).

The service runs with few finetune and sampling steps and two batch sizes so that warming it up
(compiling batch sizes 1 and 2) takes about a minute on 2 cores; the code paths are the app's.
"""

import concurrent.futures
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from hdb_jax.app.files import SessionFiles, safe_name
from hdb_jax.app.server import start_app
from hdb_jax.app.ui import YOUR_PHOTO
from hdb_jax.config.serving import app_config
from hdb_jax.formats import identity as identity_lib
from hdb_jax.models.pretrained import WORLD_DIR
from hdb_jax.serve.scheduler import BatchScheduler
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import split_identities

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = "a {token} face\na {token} face wearing a red hat"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[str]:
  """Three held-out world faces (validation split) as PNG files."""
  out = tmp_path_factory.mktemp("faces")
  paths = []
  for identity in split_identities("validation", 3):
    path = out / f"face_{identity}.png"
    path.write_bytes(png(render(identity, 0, None, 64)))
    paths.append(str(path))
  return paths


@pytest.fixture(scope="module")
def running():
  config = app_config("")
  config.update(
    steps=4, sample_steps=3, batch_sizes=(1, 2), max_prompts=2, num_samples=1, sample_faces=2,
    prompts=PROMPTS.splitlines(),
    port=free_port(), window_s=2.0,  # two client requests on busy cores still meet in 2 s
  )  # fmt: skip
  app = start_app(config, block=False)
  yield app
  app.close()


@pytest.fixture(scope="module")
def client(running):
  from gradio_client import Client

  return Client(running.url, verbose=False)


def image_path(item: dict) -> str:
  """A gallery item from gradio_client: {'image': path or {'path': ...}, 'caption': ...}."""
  image = item["image"]
  return image["path"] if isinstance(image, dict) else image


def personalize(client, photo: str | None, face: str = YOUR_PHOTO):
  from gradio_client import handle_file

  return client.predict(
    handle_file(photo) if photo else None, face, PROMPTS, api_name="/personalize"
  )


def test_personalize_downloads_and_more_images(running, client, faces):
  images, downloads, status = personalize(client, faces[0])
  assert len(images) == 2 and "personalized" in status, status
  for item in images:
    assert Image.open(image_path(item)).size == (64, 64)
  assert re.search(r"queue [\d.]+ s · .*finetune [\d.]+ s · .*sample [\d.]+ s", status), status
  names = sorted(os.path.basename(d) for d in downloads)
  assert names[0] == "identity.safetensors" and len(downloads) == 3, names
  sd = running.service.personalizer.base.sd
  identity_path = next(d for d in downloads if d.endswith("identity.safetensors"))
  ident = identity_lib.load(identity_path, sd)  # the identity API, checked against the model
  assert ident.meta.base_model == "world"

  # the diffusers LoRA loads into PyTorch diffusers' pipeline of the world model, one LoRA layer
  # per adapted layer
  from diffusers import StableDiffusionPipeline

  assert names == ["identity.safetensors", "lora_diffusers.safetensors", "lora_kohya.safetensors"]
  lora = next(d for d in downloads if d.endswith("lora_diffusers.safetensors"))
  pipe = StableDiffusionPipeline.from_pretrained(
    WORLD_DIR, safety_checker=None, requires_safety_checker=False
  )
  pipe.load_lora_weights(os.path.dirname(lora), weight_name=os.path.basename(lora))
  wrapped = [m for part in (pipe.unet, pipe.text_encoder) for m in part.modules()
             if hasattr(m, "lora_A")]  # fmt: skip
  assert len(wrapped) == len(ident.meta.layers)

  # more images of this session's identity, then of an uploaded identity file
  from gradio_client import handle_file

  more, note = client.predict(None, PROMPTS, api_name="/generate")
  assert len(more) == 2 and "sampled" in note, note
  again, note = client.predict(handle_file(identity_path), "a {token} face", api_name="/generate")
  assert len(again) == 1 and "sampled" in note, note
  # the same identity and prompt, the same seed: the same picture
  first = np.asarray(Image.open(image_path(images[0])))
  np.testing.assert_array_equal(np.asarray(Image.open(image_path(again[0]))), first)


def test_two_requests_at_once_run_as_one_batch_each_as_if_alone(running, client, faces):
  from gradio_client import Client

  other = Client(running.url, verbose=False)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    done = list(pool.map(lambda args: personalize(*args), [(client, faces[1]), (other, faces[2])]))
  batches = set()
  for _, _, status in done:
    assert "together with 1 other photo(s)" in status, status
    batches.add(re.search(r"in batch (\d+)", status).group(1))
  assert len(batches) == 1  # the same run
  personalizer = running.service.personalizer
  for face, (_, downloads, _) in zip(faces[1:], done):
    together = identity_lib.load(next(d for d in downloads if d.endswith("identity.safetensors")))
    with open(face, "rb") as f:
      photo = personalizer.prepare_photo(f.read())
    alone = personalizer.personalize([photo], [["a {token} face"]])[0].identity
    # Each photo is trained as if alone (its random stream comes from its pixels): the same
    # weights up to float reassociation across batch sizes (issue 3's tolerance: the first steps'
    # losses within rtol 3e-3; measured here on the trained factors: <= 1e-4 relative)
    for path, delta in alone.delta_weights().items():
      theirs = together.delta_weights()[path]
      assert np.linalg.norm(delta - theirs) <= 1e-3 * np.linalg.norm(delta) + 1e-7, path


@pytest.mark.parametrize(
  "upload, message",
  [
    (b"hello, not a picture", "not an image"),
    (png(np.zeros((1, 1, 3), np.uint8)), "is below min_size"),
    (png(np.full((64, 64, 3), 128, np.uint8))[:-40], "truncated"),
    (None, "upload a face photo or pick a world face"),
  ],
)
def test_a_bad_upload_gets_a_message_and_the_app_keeps_serving(client, tmp_path, upload, message):
  path = None
  if upload is not None:
    path = tmp_path / "upload.png"
    path.write_bytes(upload)
  images, downloads, status = personalize(client, str(path) if path else None)
  assert images == [] and downloads is None and "Could not do that" in status, status
  assert message in status, status
  # the app still serves: a world face offered by the page
  images, _, status = personalize(client, None, face=_first_world_face(client))
  assert len(images) == 2, status


def _first_world_face(client) -> str:
  info = client.view_api(return_format="dict")
  choices = info["named_endpoints"]["/personalize"]["parameters"][1]["type"]["enum"]
  return next(c for c in choices if c.startswith("world face"))


def test_in_a_real_browser(running, faces, tmp_path):
  """Headless Chromium (the system's, from apt) opens the page, uploads a photo, personalizes, and
  waits for the gallery's images to load; the screenshot is kept in tmp_path."""
  from selenium import webdriver
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait

  browser, driver_path = (
    shutil.which("chromium") or shutil.which("chromium-browser"),
    shutil.which("chromedriver"),
  )
  assert browser and driver_path, "apt-get install chromium chromium-driver (.ci/run does)"
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
    options.add_argument(arg)
  options.add_argument("--window-size=1280,900")
  service = webdriver.ChromeService(executable_path=driver_path)
  driver = webdriver.Chrome(options=options, service=service)
  try:
    driver.get(running.url)
    wait = WebDriverWait(driver, 240)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
    upload.send_keys(faces[0])
    wait.until(lambda d: "face_" in d.find_element(By.ID, "photo").text)
    driver.find_element(By.ID, "personalize").click()
    loaded = (
      "return Array.from(document.querySelectorAll('#gallery img'))"
      ".filter(i => i.complete && i.naturalWidth > 0).length"
    )
    wait.until(lambda d: d.execute_script(loaded) >= 2)
    assert "personalized" in driver.find_element(By.ID, "status").text
    shot = tmp_path / "app.png"
    driver.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
  finally:
    driver.quit()


def test_session_files_are_private_and_swept(tmp_path):
  files = SessionFiles(ttl_s=60, root=str(tmp_path / "root"))
  try:
    assert safe_name("../../etc/passwd") == "etcpasswd" and safe_name("") == "anonymous"
    old, new = files.new_dir("../a"), files.new_dir("b")
    assert os.path.dirname(os.path.dirname(old)) == files.root
    past = time.time() - 120
    os.utime(old, (past, past))
    assert files.sweep() == [old]
    assert not os.path.exists(os.path.dirname(old)) and os.path.isdir(new)
  finally:
    files.close()
  assert not os.path.exists(tmp_path / "root")


def test_the_scheduler_batches_requests_in_its_window_and_isolates_failures():
  runs = []

  def run(items):
    runs.append(list(items))
    if "bad" in items:
      raise ValueError("bad item")
    return [item.upper() for item in items]

  scheduler = BatchScheduler(run, window_s=2.0, max_batch=3)
  try:
    futures = [scheduler.submit(x) for x in ("a", "b", "c", "d")]
    assert [f.result(10)[0] for f in futures] == ["A", "B", "C", "D"]
    assert runs == [["a", "b", "c"], ["d"]]  # max_batch, then the rest
    # a failing request in a batch fails alone: the batch is rerun one by one
    runs.clear()
    good, bad = scheduler.submit("e"), scheduler.submit("bad")
    assert good.result(10)[0] == "E"
    with pytest.raises(ValueError, match="bad item"):
      bad.result(10)
    assert runs == [["e", "bad"], ["e"], ["bad"]]
    # a request cancelled while queued is skipped; the worker goes on
    first, cancelled = scheduler.submit("f"), scheduler.submit("g")
    assert cancelled.cancel()
    assert first.result(10)[0] == "F" and scheduler.submit("h").result(10)[0] == "H"
  finally:
    scheduler.close()
  with pytest.raises(RuntimeError, match="closed"):
    scheduler.submit("i")


def test_closing_fails_what_is_still_queued():
  started = threading.Event()

  def slow(items):
    started.set()
    time.sleep(1.0)
    return list(items)

  scheduler = BatchScheduler(slow, window_s=0.0, max_batch=1)
  running, queued = scheduler.submit("a"), None
  started.wait(10)
  queued = scheduler.submit("b")
  scheduler.close()
  assert running.result(10)[0] == "a"  # the run in progress finishes
  with pytest.raises(RuntimeError, match="closed"):
    queued.result(10)


def test_upload_limits_and_a_local_only_server(running, client, tmp_path):
  from hdb_jax.io.images import ImageError

  assert running.url.startswith("http://127.0.0.1:") and not running.app.share_url
  personalizer = running.service.personalizer
  photo = png(np.full((100, 100, 3), 90, np.uint8))
  limit = personalizer.config.max_photo_pixels
  try:
    personalizer.config.max_photo_pixels = 100 * 100 - 1  # refused from the header
    with pytest.raises(ImageError, match="exceeds the limit of 9,999 pixels"):
      personalizer.prepare_photo(photo)
  finally:
    personalizer.config.max_photo_pixels = limit
  assert personalizer.prepare_photo(photo).shape == (64, 64, 3)
  big = tmp_path / "big.png"  # over max_upload_mb: gradio refuses the upload itself
  big.write_bytes(b"\0" * (personalizer.config.max_upload_mb * 2**20 + 1))
  with pytest.raises(Exception, match="(?i)too large|size|413"):
    personalize(client, str(big))
  images, _, status = personalize(client, None, face=_first_world_face(client))
  assert len(images) == 2, status  # still serving


def test_the_command_line_help_and_a_refused_config():
  # absl's --help exits 1 after printing the usage
  out = subprocess.run([sys.executable, "-m", "hdb_jax.app", "--help"], cwd=REPO,
                       capture_output=True, text=True).stdout  # fmt: skip
  listed = re.findall(r"--config\.([a-z_]+)=", out)
  config = app_config("")
  assert {"host", "port", "share", "hypernet", "files_ttl_s"} <= set(listed)
  assert all(name in config for name in listed), listed  # the help names real fields
  command = [sys.executable, "-m", "hdb_jax.app", "--config.batch_sizes=(0,)"]
  bad = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  assert bad.returncode == 1 and "batch_sizes must be positive" in bad.stderr, bad.stderr
