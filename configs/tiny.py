"""A tiny variant of configs/base.py for tests and smoke runs on a CPU.

  python -m dreamfusion_jax.main --config configs/tiny.py --config.prior.model=DIR \
      --config.prompt="a red cube" --workdir /tmp/tiny

DIR is a tiny random prior in the diffusers layout (tests write one with
`dreamfusion_jax.prior.testing`); everything else is the base pipeline at toy sizes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(arg=None):
  c = base.get_config(arg)
  with c.unlocked():
    c.num_steps = 4
    c.prior.model = ""  # must be given: a tiny prior folder
    c.prior.dtype = "float32"
    c.nerf.num_freqs = 4
    c.nerf.width = 32
    c.nerf.num_blocks = 1
    c.nerf.background_width = 16
    c.render.resolution = 16
    c.render.num_samples = 16
    c.render.num_importance = 8
    c.shading.ambient_only_steps = 1
    c.optim.warmup_steps = 1
    c.log.every = 1
    c.log.images_every = 2
    c.log.image_resolution = 16
    c.log.checkpoint_every = 2
    c.export.video_frames = 4
    c.export.video_resolution = 16
    c.export.mesh_resolution = 24
  return c
