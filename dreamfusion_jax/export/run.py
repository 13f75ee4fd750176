"""Everything a finished run exports: turntable videos in each shading mode and a coloured mesh.

Called at the end of training (train.py) and by the export CLI (`python -m dreamfusion_jax.export`)
on restored params. A field with no surface is a normal outcome early in training, so an empty mesh is
recorded as a notice (and a text file next to where the mesh would be), never an exception.
"""

import functools
import os
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp

import ml_collections

from dreamfusion_jax import checkpoint
from dreamfusion_jax import step as step_lib
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.export import mesh as mesh_lib
from dreamfusion_jax.export import video
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import render
from dreamfusion_jax.nerf.field import Scene

# Rays rendered at once during export. Normals need the density's gradient, so the MLP activations of
# every sample are kept for one backward pass: 8192 rays x 128 samples x 128 wide x ~15 saved tensors
# is about 8 GB in float32, which fits the accelerators this runs on; the CPU test sizes are far below.
RAYS_PER_CALL = 8192
POINTS_PER_CALL = 65536  # mesh grid points (or vertices) per field evaluation; forward only


def _check_formats(formats: Sequence[str]) -> tuple:
  allowed = video.VIDEO_FORMATS + mesh_lib.MESH_FORMATS
  formats = tuple(formats)
  unknown = [f for f in formats if f not in allowed]
  if unknown:
    raise ValueError(f"config.export.formats must be among {allowed}, got {unknown}")
  return formats


def make_render_fn(config, scene: Scene, params, key: jax.Array, resolution: int):
  """(cameras, shading mode) -> RenderOutput, jitted, rendering at most RAYS_PER_CALL rays at once."""
  ray_chunk = int(config.export.get("render_chunk", RAYS_PER_CALL))

  @jax.jit
  def render_views(params, cameras, mode):
    return render.render_views(scene, params, cameras, key, config, mode, train=False,
                               chunk=min(ray_chunk, resolution * resolution))

  def render_fn(cameras, mode):
    return render_views(params, cameras, jnp.full(cameras.focal.shape, mode, jnp.int32))
  return render_fn, max(1, ray_chunk // (resolution * resolution))


def field_fns(scene: Scene, params):
  """(density_fn, albedo_fn) of points [N, 3], jitted with params as an argument (not a constant)."""
  density = jax.jit(lambda p, x: scene.apply(p, x, method=Scene.density))
  albedo = jax.jit(lambda p, x: scene.apply(p, x)[1])
  return functools.partial(density, params), functools.partial(albedo, params)


def export_all(config, scene: Scene, params: Any, out_dir: str, formats: Sequence[str],
               key: jax.Array) -> dict:
  """Writes turntable videos (one per mode) and the mesh into `out_dir`.

  Args:
    config: the run's config (config.export, config.nerf.bound, render and shading fields).
    scene, params: the Flax Scene and its variables (host or device arrays).
    out_dir: folder to write into (created).
    formats: subset of mp4, gif (videos) and glb, obj, ply (mesh); config.export.formats.
    key: PRNG key of the renders (deterministic sampling; only background=random uses it).
  Returns:
    {"turntable_<mode>": [paths], "mesh": [paths], "notices": [str]}; "mesh" is absent when the field
    is empty, and the reason is in "notices".
  """
  formats = _check_formats(formats)
  e = config.export
  os.makedirs(out_dir, exist_ok=True)
  written, notices = {}, []
  latent = bool(config.prior.latent_render)
  modes = video.MODES
  if latent:
    # Rendered latents are not colours; decoding every frame through the VAE is left to the prior.
    modes = ("normals", "depth")
    notices.append("latent_render: colour turntables and mesh colours are skipped (the field's "
                   "albedo is a Stable Diffusion latent); normals and depth are written")
  video_formats = [f for f in formats if f in video.VIDEO_FORMATS]
  if video_formats:
    render_fn, frames_per_call = make_render_fn(config, scene, params, key, int(e.video_resolution))
    frames = video.render_turntable(
        render_fn, int(e.video_frames), int(e.video_resolution), float(e.video_elevation),
        float(e.video_distance), chunk=frames_per_call, modes=modes)
    for mode, clip in frames.items():
      written[f"turntable_{mode}"] = video.write_video(
          os.path.join(out_dir, f"turntable_{mode}"), clip, float(e.video_fps), video_formats)
  mesh_formats = [f for f in formats if f in mesh_lib.MESH_FORMATS]
  if mesh_formats:
    density_fn, albedo_fn = field_fns(scene, params)
    try:
      mesh = mesh_lib.extract_mesh(
          density_fn, None if latent else albedo_fn, float(config.nerf.bound), int(e.mesh_resolution),
          level=float(e.mesh_level), chunk=POINTS_PER_CALL, keep_largest=int(e.get("mesh_keep_largest", 0)))
      written["mesh"] = mesh_lib.write_mesh(mesh, os.path.join(out_dir, "mesh"), mesh_formats)
    except mesh_lib.EmptyFieldError as err:
      notice = f"no mesh written: {err}"
      logging.warning(notice)
      notices.append(notice)
      with open(os.path.join(out_dir, "mesh_empty.txt"), "w") as f:
        f.write(notice + "\n")
  written["notices"] = notices
  return written


def out_channels(params) -> int:
  """Channels the field was trained with (3 for RGB, 4 for directly rendered latents)."""
  return int(params["params"]["field"]["albedo"]["kernel"].shape[-1])


def restore_final_params(workdir: str, step=None) -> tuple:
  """(params, step, config) of a run in `workdir`: the params it exports (its moving average when its
  own saved config keeps one) from checkpoint `step` (newest if None), and that config."""
  saved = workdir_lib.load_config(workdir)
  if saved is None:
    raise workdir_lib.WorkdirError(f"{os.path.join(workdir, workdir_lib.CONFIG_FILE)} not found: --workdir must "
                                   "be a folder written by python -m dreamfusion_jax.main.")
  config = ml_collections.ConfigDict(saved)
  params, step = checkpoint.restore_params(workdir, step, item=step_lib.final_params_item(config))
  return params, step, config


def export_checkpoint(workdir: str, step=None, formats=None) -> dict:
  """Restores a checkpoint of `workdir` and writes its exports; returns the written paths."""
  params, step, config = restore_final_params(workdir, step)
  scene = field.make_scene(config, out_channels=out_channels(params))
  out_dir = os.path.join(workdir, "export", f"step_{step}")
  written = export_all(config, scene, params, out_dir, formats or config.export.formats,
                                  jax.random.PRNGKey(config.seed))
  return dict(written, step=step, out_dir=out_dir)
