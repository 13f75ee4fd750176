"""Names and captions of the embedded world: shapes, colours, and the prompts the prior was trained on.

A caption is "a {colour} {shape}" ("an" before a vowel) or, with DreamFusion's view-dependent prompting (App. A), the same
text followed by ", {view} view" where view is one of nerf.camera.VIEW_NAMES. The training step builds
its prompts with exactly that suffix, so the prior has seen every string the step will ask about.

Textureless renders (white albedo, shaded) carry no colour, so the world captions them with the
colourless text "a {shape}" (plus the same view suffix). Coloured renders are also captioned colourless
some of the time, so "a cube" means "a cube of any colour, or an untextured one".
"""

from typing import Optional

import numpy as np

from dreamfusion_jax.nerf.camera import VIEW_NAMES
from dreamfusion_jax.prior.text import indefinite_article

# Index order is part of the shipped model's training distribution; append, never reorder.
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "snowman", "mushroom", "table")

# Linear-RGB albedos in [0, 1]. Hues are spread far apart and kept saturated so that a colour stays
# recognisable under lambertian shading with ambient 0.1; black is not zero so its shading is visible.
COLOURS = {
    "red": (0.85, 0.08, 0.08),
    "orange": (0.95, 0.45, 0.05),
    "yellow": (0.92, 0.85, 0.10),
    "green": (0.10, 0.70, 0.15),
    "blue": (0.10, 0.25, 0.90),
    "purple": (0.50, 0.12, 0.75),
    "white": (0.92, 0.92, 0.92),
    "black": (0.08, 0.08, 0.08),
}
COLOUR_NAMES = tuple(COLOURS)

# The empty prompt: the unconditional branch of classifier-free guidance.
EMPTY = ""


def _check(name: str, value: Optional[str], allowed: tuple[str, ...]) -> None:
  if value is not None and value not in allowed:
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def caption(shape: str, colour: Optional[str] = None, view: Optional[str] = None) -> str:
  """The caption of one render: "a red cube", "a cube" (colour None), "a red cube, side view"."""
  _check("shape", shape, SHAPES)
  _check("colour", colour, COLOUR_NAMES)
  _check("view", view, VIEW_NAMES)
  noun = shape if colour is None else f"{colour} {shape}"
  text = f"{indefinite_article(noun)} {noun}"
  return text if view is None else view_prompt(text, view)


def view_prompt(prompt: str, view: str) -> str:
  """DreamFusion's view-dependent prompt, the same string the distillation step builds."""
  _check("view", view, VIEW_NAMES)
  return f"{prompt}, {view} view"


def prompt_set() -> list[str]:
  """Every benchmark prompt, shape-major: "a red sphere", "an orange sphere", ..., "a black table"."""
  return [caption(s, c) for s in SHAPES for c in COLOUR_NAMES]


def default_prompts(count: int = 12) -> list:
  """`count` distinct prompts cycling through every shape, with colours stepped so all eight appear.

  The colour steps by 3 (coprime to 8) and shifts by one on each further pass over the shapes, so no
  (shape, colour) pair repeats: a repeated caption would make R-precision's retrieval ambiguous.
  """
  shapes, names = SHAPES, COLOUR_NAMES
  if not 0 < count <= len(shapes) * len(names):
    raise ValueError(f"count must be in 1..{len(shapes) * len(names)}, got {count}")
  return [caption(shapes[i % len(shapes)], names[(3 * i + i // len(shapes)) % len(names)])
          for i in range(count)]


def prompt_list(text: Optional[str]) -> list[str]:
  """The prompts of a comma-separated list of world captions ("a red cube,a blue torus"); None gives
  `default_prompts()`. Raises ValueError naming an unknown word, or on a list with no prompt."""
  if text is None:
    return default_prompts()
  prompts = [p.strip() for p in text.split(",") if p.strip()]
  if not prompts:
    raise ValueError(f"the prompt list {text!r} names no prompt: give comma-separated captions such as "
                     "'a red cube'")
  for p in prompts:
    parse_prompt(p)
  return prompts


def parse_prompt(prompt: str) -> tuple[str, Optional[str]]:
  """(shape, colour or None) of a world caption; a view suffix is ignored. Raises on other text."""
  text = prompt.split(",")[0].strip().lower()
  words = text.split()
  if len(words) == 2 and words[0] in ("a", "an") and words[1] in SHAPES:
    return words[1], None
  if len(words) == 3 and words[0] in ("a", "an") and words[1] in COLOURS and words[2] in SHAPES:
    return words[2], words[1]
  raise ValueError(f"prompt must read 'a [colour] shape' with shape in {SHAPES} and colour in "
                   f"{COLOUR_NAMES}, got {prompt!r}")


def caption_table() -> list[str]:
  """Every caption the prior is trained on, as a flat list indexed by `caption_index`.

  Layout: index = ((shape * (num_colours + 1)) + colour_slot) * (num_views + 1) + view_slot, where
  colour_slot = num_colours means "no colour" and view_slot = num_views means "no view suffix". The
  empty prompt is appended last, at index `len(table) - 1`.
  """
  colours = COLOUR_NAMES + (None,)
  views = VIEW_NAMES + (None,)
  table = [caption(s, c, v) for s in SHAPES for c in colours for v in views]
  return table + [EMPTY]


def caption_index(shape, colour_slot, view_slot):
  """Index into caption_table(); works on ints and on (traced) integer arrays alike."""
  return (shape * (len(COLOUR_NAMES) + 1) + colour_slot) * (len(VIEW_NAMES) + 1) + view_slot


def colour_array() -> np.ndarray:
  """[num_colours, 3] albedos in COLOUR_NAMES order."""
  return np.asarray([COLOURS[c] for c in COLOUR_NAMES], np.float32)
