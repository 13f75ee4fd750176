"""The main job on the embedded prior the package ships: runs on a laptop CPU in minutes.

  python -m dreamfusion_jax.main --config configs/shapes.py \
      --config.prompt="a red cube" --workdir runs/red_cube

The prior is a 32x32 pixel-space text-to-image diffusion model trained by this project on a procedural
world of coloured primitives (dreamfusion_jax/shapes; prompts like "a red cube", "a blue torus"), in
Stable Diffusion's diffusers layout and loaded by the same code. DreamFusion's own prior (Imagen) was
pixel-space too. Everything else is configs/base.py scaled down to CPU size.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base  # pylint: disable=g-import-not-at-top,wrong-import-position

from dreamfusion_jax.shapes import captions  # pylint: disable=g-import-not-at-top,wrong-import-position

# The shipped weights, found relative to this file so the config works from any working directory.
SHAPES_PRIOR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "dreamfusion_jax", "shapes", "weights"))


def get_config(arg=None):
  c = base.get_config(arg)
  with c.unlocked():
    c.num_steps = 1000  # ~15x fewer than the paper: the 32x32 world is simple
    c.prior.model = SHAPES_PRIOR
    c.prior.dtype = "float32"  # a 3 MB model: bf16 saves nothing on a CPU
    # The prior saw textureless (white) renders only under colourless captions ("a cube"), so
    # textureless views are scored against the prompt without its colour word.
    c.prior.textureless_drop_words = captions.COLOUR_NAMES
    c.sds.guidance_scale = 50.0  # 2D SDS on this prior binds colour and shape at CFG 20-100
    c.nerf.num_freqs = 6
    c.nerf.width = 64
    c.nerf.num_blocks = 2
    c.nerf.background_width = 32
    c.render.resolution = 32  # the prior's own resolution: no resize
    c.render.num_samples = 24
    c.render.num_importance = 8
    c.shading.ambient_only_steps = 100  # the paper's 1k of 15k steps, scaled
    c.reg.orientation_anneal_steps = 300
    c.optim.lr = 5e-3
    c.optim.warmup_steps = 50
    c.optim.end_lr = 5e-4
    c.log.every = 10
    c.log.images_every = 100
    c.log.image_resolution = 32
    c.log.checkpoint_every = 200
    c.export.video_frames = 36  # a 10-degree step
    c.export.video_resolution = 64  # every frame costs a full render with normals on the CPU
    c.export.mesh_resolution = 64
  return c
