"""The evaluation prompt set (ours): recontextualization and stylization of a face.

The paper evaluates on prompts of both kinds but does not list them all; these are ours. Each prompt
holds `{token}` where the identifier goes ("a sks face ..."); CLIP-T compares an image with the
prompt without it (metrics.prompt_without_token). Every prompt keeps "face", the class noun the
identities were personalized with.
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
PROMPT_SETS = {
  "all": RECONTEXTUALIZATION + STYLIZATION,
  "recontextualization": RECONTEXTUALIZATION,
  "stylization": STYLIZATION,
  "tiny": (RECONTEXTUALIZATION[3], STYLIZATION[0]),  # one of each, for the tiny offline runs
}


def resolve_prompts(spec: str) -> list[str]:
  """A set name ('all', 'recontextualization', 'stylization', 'tiny') or prompts separated by
  '|'."""
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
