"""Small helpers shared by the tests."""


def override(config, **overrides):
  """Sets config fields named with "__" for "." (nerf__width=8 sets config.nerf.width); returns config."""
  for dotted, value in overrides.items():
    *path, last = dotted.split("__")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config
