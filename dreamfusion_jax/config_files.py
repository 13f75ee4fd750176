"""The repo's config files (configs/*.py), loaded by path.

The main job and the benchmark take --config through ml_collections' config flags; the other entry points
(2D mode, probes, coverage, micro-benchmarks) take a plain path and load it here, and the shapes tools
(drift, fixed_point) change its fields with --set FIELD=VALUE (`apply_overrides`).
"""

import ast
import importlib.util
import os

CONFIG_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
BASE = os.path.join(CONFIG_DIR, "base.py")  # Stable Diffusion 2.1-base, the paper's defaults
SHAPES = os.path.join(CONFIG_DIR, "shapes.py")  # the embedded prior
TINY = os.path.join(CONFIG_DIR, "tiny.py")  # the tests'


def load(path: str = BASE, arg=None):
  """get_config(arg) of the config file at `path`; a missing file is refused by name."""
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"--config={path}: no such config file")
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def apply_overrides(config, settings) -> None:
  """Sets "a.b=value" strings (value a Python literal, or else the text itself) into `config`."""
  for item in settings:
    name, sep, value = item.partition("=")
    if not sep or not name:
      raise ValueError(f"--set {item!r}: write FIELD=VALUE, e.g. sds.t_max=0.3")
    *path, last = name.strip().split(".")
    node = config
    for part in path:
      if part not in node:
        raise ValueError(f"--set {item!r}: the config has no field {name.strip()!r}")
      node = node[part]
    if last not in node:
      raise ValueError(f"--set {item!r}: the config has no field {name.strip()!r}")
    try:
      parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      parsed = value.strip()  # a plain word: a name such as sds.weighting=uniform
    node[last] = parsed  # the config's own type check refuses a wrong type (TypeError)
