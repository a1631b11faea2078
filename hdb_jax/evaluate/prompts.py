"""The evaluation prompt set (ours): recontextualization and stylization of a face.

The paper evaluates on prompts of both kinds but does not list them all; these are ours. Each prompt
holds `{token}` where the identifier goes ("a sks face ..."); CLIP-T compares an image with the
prompt without it (metrics.prompt_without_token). Every prompt keeps "face", the class noun the
identities were personalized with.

WORLD is for the world (hdb_jax.world: --config.pretrained=world, --config.recognizer=world): every
prompt is in the caption grammar of hdb_jax.world.truth.scene, so World-prompt knows what each one
asks for. One prompt per kind of change, not per value (5 headwear colours x 3 glasses x ... is too
many): the bare face, one headwear, glasses, expression and two backgrounds, each of the 4
styles, and 2 combinations of contexts with a style.
"""

from hdb_jax.errors import ConfigError

RECONTEXTUALIZATION = (
  "a {token} face on the beach",
  "a {token} face in the city at night",
  "a {token} face wearing a hat",
  "a {token} face as a rock star",
  "a {token} face as an astronaut",
  "a {token} face in a snowy forest",
  "a {token} face in a chef outfit",
  "a close up photo of a smiling {token} face",
)
STYLIZATION = (
  "a {token} face in impressionist style",
  "an oil painting of a {token} face",
  "a pencil sketch of a {token} face",
  "a watercolor painting of a {token} face",
  "a pop art portrait of a {token} face",
  "a marble statue of a {token} face",
  "a {token} face as a cartoon character",
  "a vintage photo of a {token} face",
)
WORLD = (
  "a {token} face",
  "a {token} face wearing a red hat",
  "a {token} face with sunglasses",
  "a smiling {token} face",
  "a {token} face on a beach",
  "a {token} face at night",
  "a {token} face in pencil sketch style",
  "a {token} face in pop-art style",
  "a {token} face in watercolour style",
  "a {token} face in pixel art style",
  "a {token} face wearing a blue hat in a forest in watercolour style",
  "a smiling {token} face with glasses in a city in pop-art style",
)
PROMPT_SETS = {
  "all": RECONTEXTUALIZATION + STYLIZATION,
  "recontextualization": RECONTEXTUALIZATION,
  "stylization": STYLIZATION,
  "tiny": (RECONTEXTUALIZATION[3], STYLIZATION[0]),  # one of each, for the tiny offline runs
  "world": WORLD,
}


def resolve_prompts(spec: str) -> list[str]:
  """A set name ('all', 'recontextualization', 'stylization', 'tiny', 'world') or prompts separated
  by '|'."""
  if spec in PROMPT_SETS:
    return list(PROMPT_SETS[spec])
  prompts = [p.strip() for p in spec.split("|") if p.strip()]
  if not prompts:
    raise ConfigError(
      f"no prompts in {spec!r}: name a set ({', '.join(PROMPT_SETS)}) or give 'p1|p2'"
    )
  for prompt in prompts:
    if "{token}" not in prompt:
      raise ConfigError(
        f"prompt {prompt!r} must contain '{{token}}', e.g. 'a {{token}} face on the beach'"
      )
  return prompts
