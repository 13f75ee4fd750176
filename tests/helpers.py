"""Small helpers shared by the tests."""

from dreamfusion_jax import config_files


def override(config, **overrides):
  """Sets config fields named with "__" for "." (nerf__width=8 sets config.nerf.width); returns config."""
  for dotted, value in overrides.items():
    *path, last = dotted.split("__")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config


def loaded_config(section: str, **fields):
  """configs/base.py as the training step loads it, with `fields` of one section set (sds, sjc, ...)."""
  return override(config_files.load(), **{f"{section}__{k}": v for k, v in fields.items()})
