"""The warm personalization service under load: personalizations per minute and p50 / p95 latency
for 1, 4 and 8 users arriving together, against the same photos personalized one at a time.

Not a test: prints a table. The service (hdb_jax.serve) is the app's, without the web page: the
world model, configs/app.py's settings (the shipped world hypernetwork if installed, else LiDB from
scratch; 40 finetune steps, 25 sampling steps, 4 prompts, 1 image each), warmed up first (every
batch size compiled), so no timed request compiles. Each round, `users` threads submit one held-out
world face each at the same moment; a round's latency is submit -> result per user.
"One at a time" personalizes the same photos in turn with the same warm personalizer (batches of
one, no batching window).

  python benchmarks/serve.py                         # 1, 4, 8 users, 3 rounds each
  python benchmarks/serve.py --users=1,4 --rounds=2 --steps=10 --sample_steps=10   # quicker
"""

import argparse
import concurrent.futures
import statistics
import time

import numpy as np

from hdb_jax.config.serving import app_config
from hdb_jax.serve.personalizer import Personalizer
from hdb_jax.serve.service import PersonalizationService
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import split_identities


def percentile(values: list[float], q: float) -> float:
  return float(np.percentile(np.asarray(values), q))


def photos(count: int, resolution: int) -> list[np.ndarray]:
  """count held-out (validation) world faces, float32 [R, R, 3] in [-1, 1]."""
  return [render(i, 0, None, resolution).astype(np.float32) / 127.5 - 1.0
          for i in split_identities("validation", count)]  # fmt: skip


def concurrent_rounds(
  service: PersonalizationService, faces: list[np.ndarray], prompts: list[str], users: int, rounds
) -> tuple[list[float], float, list[int]]:
  """(latencies, wall seconds, batch sizes seen) of `rounds` rounds of `users` simultaneous
  requests."""
  latencies, sizes = [], []
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(users) as pool:
    for r in range(rounds):
      batch = [faces[(r * users + u) % len(faces)] for u in range(users)]

      def one(photo):
        t = time.perf_counter()
        result = service.personalize(photo, prompts)
        return time.perf_counter() - t, result.batch_size

      for latency, size in pool.map(one, batch):
        latencies.append(latency)
        sizes.append(size)
  return latencies, time.perf_counter() - start, sizes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--users", default="1,4,8", help="concurrent users per round, comma-separated"
  )
  parser.add_argument("--rounds", type=int, default=3, help="rounds per user count")
  parser.add_argument("--steps", type=int, default=None, help="finetune steps (default: config's)")
  parser.add_argument("--sample_steps", type=int, default=None, help="sampling steps")
  parser.add_argument("--hypernet", default=None, help="config.hypernet (default 'auto')")
  args = parser.parse_args()
  users = [int(u) for u in args.users.split(",")]
  config = app_config("")
  config.batch_sizes = tuple(sorted({1, 2, 4, 8} | set(users)))
  for key, value in (("steps", args.steps), ("sample_steps", args.sample_steps),
                     ("hypernet", args.hypernet)):  # fmt: skip
    if value is not None:
      config[key] = value
  personalizer = Personalizer(config)
  print(f"service: {personalizer.describe()}; warming up batch sizes {config.batch_sizes} ...")
  print(f"warm-up (compiles): {personalizer.warm_up():.0f} s")
  faces = photos(max(users) * args.rounds, personalizer.resolution)
  prompts = list(config.prompts)
  rows = []
  with PersonalizationService(personalizer) as service:
    for n in users:
      latencies, wall, sizes = concurrent_rounds(service, faces, prompts, n, args.rounds)
      rows.append((f"{n} at once", latencies, wall, statistics.mean(sizes)))
    # the same photos, one at a time, straight to the personalizer (no batching window to wait)
    n = max(users)
    sequential, start = [], time.perf_counter()
    for photo in faces[: n * args.rounds]:
      t = time.perf_counter()
      personalizer.personalize([photo], [prompts])
      sequential.append(time.perf_counter() - t)
    rows.append((f"{n} one at a time", sequential, time.perf_counter() - start, 1.0))
  print()
  print(f"{'users':<18} {'per minute':>10} {'p50 s':>7} {'p95 s':>7} {'mean batch':>10}")
  for name, latencies, wall, batch in rows:
    per_minute = 60 * len(latencies) / wall
    print(f"{name:<18} {per_minute:>10.1f} {percentile(latencies, 50):>7.2f} "
          f"{percentile(latencies, 95):>7.2f} {batch:>10.1f}")  # fmt: skip
  batched, alone = rows[-2], rows[-1]
  speedup = (len(batched[1]) / batched[2]) / (len(alone[1]) / alone[2])
  print(f"\n{batched[0]} vs {alone[0]}: {speedup:.2f}x the personalizations per minute")


if __name__ == "__main__":
  main()
