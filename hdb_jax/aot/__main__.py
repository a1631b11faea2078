"""Compile a config's programs for TPU topologies, with no TPU and no weights; print (and write)
memory per device, FLOPs, a roofline bound on step time, throughput and compile time.

  python -m hdb_jax.aot --config=configs/hyper.py:tiny --topology=v5e:2x2
  python -m hdb_jax.aot --config=configs/personalize.py:tiny \\
      --hypernet_config=configs/hyper.py:tiny --topology=v5e:2x2 --topology=v6e:2x2 \\
      --json=/tmp/aot.json

  python -m hdb_jax.aot --write_architectures=/tmp/arch   # offline: SD1.5 + ViT-H/14 configs
  python -m hdb_jax.aot --config=configs/hyper.py --config.pretrained=/tmp/arch/sd15 \
      --config.encoder.pretrained=/tmp/arch/vit-h14 --topology=v5e:2x4

The phase is the config file's name (lidb, hyper, personalize, world). Needs libtpu
(`pip install "jax[tpu]==<jax version>"`). The library call is hdb_jax.aot.run.compile_config.
"""

import os

from absl import flags
from ml_collections import config_flags

from hdb_jax.aot.report import table, write_json
from hdb_jax.aot.run import compile_config
from hdb_jax.models.architectures import write_architectures
from hdb_jax.runtime.cli import define_config_flags, run_main
from hdb_jax.runtime.overview import log_config

flags.DEFINE_multi_string("topology", ["v5e:2x2"], "TPU topology, e.g. v5e:2x2, v4:2x2x1 (repeat).")
flags.DEFINE_string("json", None, "Write the table here as JSON.")
flags.DEFINE_integer("photos", 1, "Phase 2: photos personalized in one batch.")
flags.DEFINE_multi_string("program", [], "Compile only these programs (e.g. phase2/finetune).")
flags.DEFINE_string(
  "write_architectures",
  None,
  "Write SD1.5's and ViT-H/14's configs (no weights) to DIR/sd15 and DIR/vit-h14 and exit: "
  "compile the paper's models on a machine without the hub.",
)
config_flags.DEFINE_config_file(
  "hypernet_config",
  None,
  "Phase 2: a Phase 1 config whose hypernetwork predicts, e.g. "
  "configs/hyper.py:tiny (default: --config.hypernet's card, or none).",
)


def main(argv: list[str]) -> None:
  del argv
  if flags.FLAGS.write_architectures:
    for name, path in write_architectures(flags.FLAGS.write_architectures).items():
      print(f"{name}: {path}")
    return
  config = flags.FLAGS.config
  log_config(config)
  name = config_flags.get_config_filename(flags.FLAGS["config"])
  phase = os.path.splitext(os.path.basename(name.partition(":")[0]))[0]
  measurements = compile_config(
    config,
    phase,
    flags.FLAGS.topology,
    hypernet=flags.FLAGS.hypernet_config,
    photos=flags.FLAGS.photos,
    programs=flags.FLAGS.program,
  )
  print(table(measurements))
  if flags.FLAGS.json:
    write_json(flags.FLAGS.json, measurements, name)


if __name__ == "__main__":
  define_config_flags("configs/hyper.py:tiny", workdir_required=False)
  run_main(main)
