"""The package's shape: every import goes down the layers, nothing imports in a loop, configs agree.

The layers (README "Layout"), lowest first: a module may import its own package and the packages
below it, never one above (function-level imports count too: hiding an import in a function does
not make a loop go away). A layer can be a subpackage: `world.pretrain` sits far above `world`.
"""

import ast
import importlib.util
import pathlib

import pytest

from hdb_jax.config import phases
from hdb_jax.config import world as world_config
from hdb_jax.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hdb_jax"
LAYERS = (
  "errors",
  "io",
  "runtime",
  "models",
  "adapters",
  "data",
  "world.truth",  # the world's ground truth: imports nothing learned
  "world",
  "world.recognizer.network",  # the recognizer's networks and file (its training is far above)
  "config",
  "diffusion",
  "engine",
  "hypernet",
  "formats",
  "world.pretrain",
  "world.recognizer",
  "world.quality",
  "world.__main__",
  "export",
  "preoptimize",
  "train",
  "personalize",
  "aot",  # compiles every phase's programs ahead of time
  "evaluate",
  "generate",
  "serve",
  "demo",
  "app",
)
# only hdb_jax.models imports them (the Flax pin lives there)
THIRD_PARTY_MODELS = (
  "diffusers",
  "transformers",
)


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: pathlib.Path) -> list[tuple[str, int]]:
  """(imported module, line) for every import in the file, at any depth; `from a import b` is a.b
  when a.b is a module."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      found += [(alias.name, node.lineno) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        found.append((candidate if candidate in MODULES else node.module, node.lineno))
  return found


def top(module: str) -> str:
  """The module's layer: the longest LAYERS entry it is or is inside (hdb_jax.world.pretrain.loop
  -> 'world.pretrain', hdb_jax.world.truth.render -> 'world.truth', hdb_jax.world.source ->
  'world')."""
  inside = module.removeprefix("hdb_jax.") if module.count(".") else ""
  matches = [layer for layer in LAYERS if inside == layer or inside.startswith(layer + ".")]
  return max(matches, key=len) if matches else inside.split(".")[0]


GRAPH = {
  name: [(m, line) for m, line in imports_of(path) if m.startswith("hdb_jax.") or m == "hdb_jax"]
  for name, path in MODULES.items()
}


def test_every_top_level_module_has_a_layer():
  tops = {top(name) for name in MODULES if name != "hdb_jax"}
  assert tops == set(LAYERS), (
    f"add new packages to LAYERS (and the README's layout): {tops ^ set(LAYERS)}"
  )


def test_imports_only_go_down_the_layers():
  upward = []
  for name, edges in GRAPH.items():
    if name == "hdb_jax":
      continue
    for target, line in edges:
      if target == "hdb_jax" or top(target) == top(name):
        continue
      if LAYERS.index(top(target)) > LAYERS.index(top(name)):
        upward.append(
          f"{MODULES[name].relative_to(ROOT)}:{line} imports {target} (layer {top(target)} is "
          "above "
          f"{top(name)})"
        )
  assert not upward, "\n".join(upward)


def test_no_import_loops_and_no_package_imports_its_own_init():
  inside = [
    f"{MODULES[n].relative_to(ROOT)}:{line} imports its own package's __init__ ({t})"
    for n, edges in GRAPH.items()
    for t, line in edges
    if t != n and MODULES[n].name != "__init__.py" and n.startswith(t + ".") and t != "hdb_jax"
  ]
  assert not inside, "\n".join(inside)
  state: dict[str, int] = {}  # 1: on the current path, 2: done

  def visit(node: str, path: list[str]) -> None:
    state[node] = 1
    for target, _ in GRAPH.get(node, []):
      if target not in GRAPH:
        continue
      if state.get(target) == 1:
        loop = path[path.index(target) :] + [target] if target in path else [node, target]
        raise AssertionError("import loop: " + " -> ".join(loop))
      if target not in state:
        visit(target, path + [target])
    state[node] = 2

  for name in GRAPH:
    if name not in state:
      visit(name, [name])


def test_no_module_imports_a_command_main_and_none_reads_configs_folder():
  offenders = [
    f"{n} imports {t}" for n, edges in GRAPH.items() for t, _ in edges if t.endswith("__main__")
  ]
  assert not offenders
  for name, path in MODULES.items():
    text = path.read_text(encoding="utf-8")
    assert "spec_from_file_location" not in text, (
      f"{name} executes a file; configs come from hdb_jax.config"
    )


def test_only_the_models_package_imports_diffusers_and_transformers():
  offenders = [
    f"{MODULES[n].relative_to(ROOT)}:{line} imports {m}"
    for n in MODULES
    for m, line in imports_of(MODULES[n])
    if m.split(".")[0] in THIRD_PARTY_MODELS and top(n) != "models"
  ]
  assert not offenders, "\n".join(offenders)


def test_only_the_app_imports_gradio():
  """gradio is the optional `[app]` extra: nothing else may need it."""
  offenders = [
    f"{MODULES[n].relative_to(ROOT)}:{line} imports {m}"
    for n in MODULES
    for m, line in imports_of(MODULES[n])
    if m.split(".")[0] in ("gradio", "gradio_client") and top(n) != "app"
  ]
  assert not offenders, "\n".join(offenders)
  assert any(m == "gradio" for m, _ in imports_of(MODULES["hdb_jax.app.ui"]))


def test_the_checker_sees_function_level_imports_and_loops(tmp_path):
  """The checks above would catch the kind of loop issue 13 found (an import hidden in a
  function)."""
  source = tmp_path / "m.py"
  source.write_text("def f():\n  from hdb_jax.formats import hypernet_export\n", encoding="utf-8")
  assert ("hdb_jax.formats.hypernet_export", 2) in imports_of(source)
  edges = {name: [t for t, _ in targets] for name, targets in GRAPH.items()}
  assert "hdb_jax.formats.hypernet_card" in edges["hdb_jax.formats.hypernet_export"]
  assert "hdb_jax.formats.hypernet_export" not in edges["hdb_jax.formats.hypernet_card"]


def _repo_config(name: str, variant: str):
  spec = importlib.util.spec_from_file_location(
    f"repo_config_{name}", ROOT / "configs" / f"{name}.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


@pytest.mark.parametrize(
  "name,build,variants",
  [
    ("lidb", phases.preoptimize_config, ("", "tiny")),
    ("hyper", phases.hyper_config, phases.HYPER_VARIANTS),
    ("personalize", phases.personalize_config, ("", "tiny")),
    ("evaluate", phases.evaluate_config, ("", "tiny")),
    ("world", world_config.pretrain_config, world_config.WORLD_VARIANTS),
    ("recognizer", world_config.recognizer_config, world_config.WORLD_VARIANTS),
  ],
)
def test_config_files_return_the_package_configs_and_refuse_unknown_variants(name, build, variants):
  for variant in variants:
    assert _repo_config(name, variant).to_dict() == build(variant).to_dict()
  with pytest.raises(ConfigError, match="unknown config variant 'huge'"):
    _repo_config(name, "huge")
  docstring = ast.get_docstring(
    ast.parse((ROOT / "configs" / f"{name}.py").read_text(encoding="utf-8"))
  )
  for variant in variants:
    assert f"--config=configs/{name}.py{':' + variant if variant else ''}" in docstring or (
      variant and f"\n  {variant} " in docstring
    ), f"configs/{name}.py does not document variant {variant!r}"


def test_phase1_auto_weights_runs_phase0_with_phase1s_model_and_data():
  hyper = phases.hyper_config("tiny")
  hyper.pretrained, hyper.data.num_identities, hyper.phase0.steps = "tiny:/elsewhere", 5, 7
  phase0 = phases.phase0_of(hyper)
  reference = phases.preoptimize_config("tiny")
  assert set(phase0.keys()) == set(reference.keys())
  assert (phase0.pretrained, phase0.num_identities, phase0.steps, phase0.data.num_identities) == (
    "tiny:/elsewhere",
    5,
    7,
    5,
  )
  assert phase0.optim.to_dict() == reference.optim.to_dict()
