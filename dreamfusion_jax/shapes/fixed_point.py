"""Is the world's true object a fixed point of SDS under a prior? Where the expected update pushes it.

  python -m dreamfusion_jax.shapes.fixed_point [--config configs/shapes.py] [--weights DIR]
      [--prompts "a red cube,a purple table"] [--views 32] [--draws 12]
      [--set nerf.background_saturation=0.5 --set sds.guidance_scale=7.5 ...] [--by-scale] [--position 0.087]

A NeRF that renders the true object stays there only if the expected SDS step on the true renders is
zero. This renders the true object of each prompt (albedo, on a flat background, through the
config's training cameras and at its prior's resolution), takes the expected SDS descent direction
d = -E_{t, eps}[w(t)(eps_hat - eps)] at the config's guidance, weighting and t range after annealing, and
measures, per pixel, d's component along the colour step from the background b to the object's colour o,
s = d . (o - b) / |o - b|^2 (1: a full step to the object's colour), in three regions:

  fog     pixels more than FAR_PX pixels from the silhouette: mean s > 0 tints the background towards the
          object's colour (the low-density haze around an object), < 0 clears such a tint.
  growth  the ring up to RING_PX pixels outside the silhouette: mean s > 0 grows the object.
  fade    the ring up to RING_PX pixels inside it: mean -s > 0 fades the object's rim into the background.

All three are 0 at a fixed point. The step is per unit learning rate of an image, before the NeRF and its
regularizers (the opacity weight and coverage cap push against growth and fog). Two minutes on a CPU for
12 prompts, against an hour for the 3D benchmark: a quick look at a prior's biases in 2D (the table whose
legs the 3D runs fill in grows here too), not a ranking of the benchmark's prompts (docs/benchmark.md: the
torus and the snowman fail in 3D, which one true view does not show). Each view's background is a flat
colour drawn as the config's training views draw theirs (nerf.background, nerf.background_saturation).

--by-scale also splits each prompt's views into thirds by the object's apparent size in them (focal
length over camera distance) and prints growth and fade per third. A text-only prior (the shipped one)
is never told the camera, so at large t, where x_t hardly shows the object's size, it predicts the size
averaged over the cameras it was trained through: views that show the object small are pushed to grow it,
views that show it large to shrink it, and one 3D object cannot satisfy both. A camera-conditioned prior
(train_prior --camera-dim) is handed each view's camera (prior.camera_zoom) and can close that spread.

--position D asks whether the prior holds the object at its height. The true object is raised by D (world
units) and, separately, lowered by D (the cameras and lights moved instead), and the expected SDS descent
there is projected on the image change of a vertical move, k = <d, dI/dy> / |dI/dy|^2 per view: the
move, in world units per unit step, that the step makes. "restoring" is half of raised minus lowered:
negative when the prior pushes a raised object down and a lowered one up. SDS runs leave objects a few
cells off their true height (docs/benchmark.md, "Part of the IoU is place, not shape"); the shipped
priors restore by ~-0.001 at D = 0.087 (3 cells), the camera prior, told where the origin projects,
only 1.3x the text-only one ("Neither prior holds the object's height").
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from dreamfusion_jax import config_check
from dreamfusion_jax import config_files
from dreamfusion_jax.distill import sds as sds_lib
from dreamfusion_jax.distill import surrogate
from dreamfusion_jax.nerf import camera as camera_lib
from dreamfusion_jax.nerf import field as field_lib
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import errors
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.prior import text as text_lib
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sample
from dreamfusion_jax.shapes import world

RING_PX = 2  # width of the rings just outside / inside the silhouette
FAR_PX = 4  # "far" background: more than this many pixels from the silhouette
MEASURES = ("fog", "growth", "fade")


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
  """[V, H, W] bool grown by `pixels` steps of 4-neighbour dilation (a diamond of that radius)."""
  out = np.asarray(mask, bool).copy()
  for _ in range(pixels):
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    grown[:, :, 1:] |= out[:, :, :-1]
    grown[:, :, :-1] |= out[:, :, 1:]
    out = grown
  return out


def regions(covered: np.ndarray) -> dict:
  """Masks [V, H, W] of the fog / growth / fade regions of silhouettes `covered` [V, H, W] (bool)."""
  inside = np.asarray(covered, bool)
  return {"fog": ~dilate(inside, FAR_PX), "growth": dilate(inside, RING_PX) & ~inside,
          "fade": inside & dilate(~inside, RING_PX)}


def expected_descent(prior, prior_params, x, cond, uncond, guidance_scale: float, t_lo: float, t_hi: float,
                     key, draws: int, weighting: str = "sigma2", threshold: str = "none",
                     denoise_weight: float = 1.0, camera=None) -> jax.Array:
  """-E[g] for the SDS step's own g = w(t)(eps_hat - eps) (distill.sds.sds_gradient), over `draws` draws
  of (t, eps) per view drawn as the step draws them (t ~ U{floor(t_lo T) .. floor(t_hi T)}).

  x [V, h, w, C] in model space; cond / uncond [V, L, D]; camera [V, 4] for a camera-conditioned
  prior (nerf.camera.conditioning). Returns [V, h, w, C].
  """
  if draws < 1 or not 0.0 <= t_lo <= t_hi <= 1.0:
    raise ValueError(f"need draws >= 1 and 0 <= t_lo <= t_hi <= 1, got {draws}, {t_lo}, {t_hi}")
  run = _descent_fn(prior, float(guidance_scale), int(draws), weighting, threshold, float(denoise_weight))
  return run(prior_params, x, cond, uncond, jnp.float32(t_lo), jnp.float32(t_hi), key, camera)


@functools.lru_cache(maxsize=8)
def _descent_fn(prior, guidance_scale: float, draws: int, weighting: str, threshold: str,
                denoise_weight: float):
  """expected_descent's jitted body, one compilation per prior and setting (not per prompt)."""

  @jax.jit
  def run(prior_params, x, cond, uncond, t_lo, t_hi, key, camera):
    rep = lambda a: jnp.repeat(a, draws, axis=0)  # view-major: view i's draws at i * draws ...
    xs = rep(x)
    t, eps = surrogate.draw_t_and_noise(key, xs, t_lo, t_hi, prior.num_train_timesteps)
    g = sds_lib.sds_gradient(prior, prior_params, xs, rep(cond), rep(uncond), t, eps, guidance_scale,
                             weighting, threshold, denoise_weight=denoise_weight,
                             camera=None if camera is None else rep(camera))
    return -jnp.mean(g.reshape((x.shape[0], draws) + x.shape[1:]), axis=1)

  return run


def pressures(descent, covered, object_x, background_x) -> dict:
  """Mean fog / growth / fade (module docstring) over the views, from the descent direction.

  descent: [V, h, w, C] in model space; covered: [V, h, w] bool silhouettes; object_x [C] and
  background_x [V, C]: the object's and each view's background colour in model space.
  """
  step = np.asarray(object_x)[None] - np.asarray(background_x)  # [V, C]: background -> object
  norm2 = np.sum(step**2, axis=-1)
  if np.any(norm2 < 1e-6):
    raise ValueError("a view's background has the object's colour: the colour step is undefined")
  towards = np.einsum("vhwc,vc->vhw", np.asarray(descent), step) / norm2[:, None, None]
  out = {}
  for name, mask in regions(covered).items():
    sign = -1.0 if name == "fade" else 1.0
    out[name] = float(sign * np.sum(towards * mask) / max(int(mask.sum()), 1))
  return out


def view_backgrounds(key, num_views: int, nerf_config) -> jax.Array:
  """[V, 3] one flat colour per view, as the config's training views draw theirs: its colour for a
  solid background, else random flat colours at its nerf.background_saturation (an environment map's
  random flat draws included; the map itself is not rendered here)."""
  if nerf_config.background == "solid":
    colour = jnp.broadcast_to(jnp.asarray(nerf_config.background_color, jnp.float32), (3,))
    return jnp.tile(colour[None], (num_views, 1))
  return field_lib.random_flat_colours(key, (num_views, 3), float(nerf_config.background_saturation))


def apparent_scale(cams) -> np.ndarray:
  """[V] the object's apparent size in each view: a length L at the origin spans about
  L * apparent_scale of the frame's width (pinhole: focal in frame widths over the camera's distance)."""
  focal = np.asarray(cams.focal, np.float64) / cams.resolution
  return focal / np.linalg.norm(np.asarray(cams.position, np.float64), axis=-1)


def scale_groups(scale, groups: int = 3) -> list[np.ndarray]:
  """Boolean masks [V] splitting the views into `groups` equal-count groups by rank of `scale`, the
  smallest scales first (sizes differ by at most one; ties broken by view order)."""
  scale = np.asarray(scale)
  if groups < 1 or scale.shape[0] < groups:
    raise ValueError(f"need 1 <= groups <= views, got {groups} groups of {scale.shape[0]} views")
  rank = np.empty(scale.shape[0], int)
  rank[np.argsort(scale, kind="stable")] = np.arange(scale.shape[0])
  which = rank * groups // scale.shape[0]
  return [which == g for g in range(groups)]


def true_views(prompt: str, config, num_views: int, resolution: int, key):
  """(rgb [V, H, W, 3] in [0, 1], covered [V, H, W] bool, backgrounds [V, 3], cameras): the true albedo
  object of `prompt` through the config's training cameras, each on a flat colour (view_backgrounds)."""
  cams, backgrounds = _sample_views(config, num_views, resolution, key)
  rgb, coverage = _render_on(prompt, config, cams, backgrounds)
  return rgb, np.asarray(coverage) > 0.5, backgrounds, cams


def _sample_views(config, num_views: int, resolution: int, key):
  """(cameras, backgrounds [V, 3]) of true_views, not rendered."""
  cam_key, bg_key = jax.random.split(key)
  return (world.sample_cameras(cam_key, num_views, config, resolution),
          view_backgrounds(bg_key, num_views, config.nerf))


def _render_on(prompt: str, config, cams, backgrounds):
  """(rgb [V, H, W, 3], coverage [V, H, W]): the true albedo object through `cams`, each view's white
  background replaced by its flat colour."""
  rgb, coverage = world.render_prompt(prompt, cams, shading.ALBEDO,
                                      float(config.shading.ambient), float(config.shading.diffuse))
  return rgb + (1.0 - coverage[..., None]) * (backgrounds[:, None, None, :] - 1.0), coverage


def _conditioning(config, prior, prior_params, prompt: str, cams):
  """(cond, uncond, camera) of the config's SDS step for `prompt` in views `cams` (camera None for a
  text-only prior; a camera-conditioned one is told where the origin, the object's place, projects)."""
  emb = text_lib.embed_prompts(prior, prior_params, prompt, config.negative_prompt,
                               config.prior.view_dependent)
  cond, uncond = text_lib.select(emb, cams.view, cams.azimuth, config.prior.view_interpolate)
  camera = camera_lib.conditioning(cams, config.prior.camera_zoom) if prior.camera_conditioned else None
  return cond, uncond, camera


def measure_by_scale(config, prior, prior_params, prompt: str, num_views: int, draws: int, seed: int = 0,
                     groups: int = 3) -> tuple[dict, list[dict]]:
  """fog / growth / fade of `prompt`'s true object under config.sds (module docstring): over all the
  views, and over each of `groups` equal shares of them by apparent_scale (the smallest first), from the
  same expected descent."""
  _, colour = captions.parse_prompt(prompt)
  object_rgb = np.asarray(captions.COLOURS[colour or "white"], np.float32)
  key = jax.random.PRNGKey(seed)
  rgb, covered, backgrounds, cams = true_views(prompt, config, num_views, prior.image_size, key)
  split = scale_groups(apparent_scale(cams), groups)  # bad `groups` fails before the prior runs
  cond, uncond, camera = _conditioning(config, prior, prior_params, prompt, cams)
  c = config.sds
  x = prior.encode_image(prior_params, rgb)
  descent = expected_descent(prior, prior_params, x, cond, uncond, float(c.guidance_scale),
                             float(c.t_min), float(c.t_max), jax.random.fold_in(key, 1), draws, c.weighting,
                             c.threshold, float(c.denoise_weight), camera)
  descent = np.asarray(descent)
  object_x, background_x = 2.0 * object_rgb - 1.0, 2.0 * np.asarray(backgrounds) - 1.0
  return (pressures(descent, covered, object_x, background_x),
          [pressures(descent[m], covered[m], object_x, background_x[m]) for m in split])


# The finite difference of the vertical move in --position: ~one cell of the benchmark's 64-cell grid over
# configs/shapes.py's bound (evaluate.geometry, a cell is 0.029), below which the 32 x 32 views hardly change.
MOVE_STEP = 0.03
POSITION_MEASURES = ("raised", "lowered", "restoring")


def translation_rate(descent, jacobian) -> np.ndarray:
  """[V] the move that the descent makes in each view along the direction whose image derivative is
  `jacobian`: the least-squares k of descent ~ k * jacobian, <d, J> / |J|^2 (0 where J is 0).
  descent, jacobian: [V, h, w, C]."""
  d, j = np.asarray(descent, np.float64), np.asarray(jacobian, np.float64)
  num = np.einsum("vhwc,vhwc->v", d, j)
  den = np.einsum("vhwc,vhwc->v", j, j)
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def moved_views(prompt: str, config, cams, backgrounds, offset) -> np.ndarray:
  """[V, H, W, 3] in [0, 1]: the true albedo object of `prompt` moved by `offset` [3] (world units) on
  each view's flat background, as true_views draws it; rendered by moving the cameras and their lights
  by -offset, which is the same picture."""
  shift = jnp.asarray(offset, jnp.float32)
  moved = cams.replace(position=cams.position - shift, light_position=cams.light_position - shift)
  return np.asarray(_render_on(prompt, config, moved, backgrounds)[0])


def measure_position(config, prior, prior_params, prompt: str, num_views: int, draws: int, distance: float,
                     seed: int = 0) -> dict:
  """raised / lowered / restoring (module docstring, --position) of `prompt`'s true object moved up and
  down by `distance`, under config.sds, over the same views and draws as measure's."""
  if not distance > 0:
    raise ValueError(f"the object is moved by a distance > 0, got {distance}")
  key = jax.random.PRNGKey(seed)
  cams, backgrounds = _sample_views(config, num_views, prior.image_size, key)  # true_views' views
  cond, uncond, camera = _conditioning(config, prior, prior_params, prompt, cams)
  encode = lambda offset: np.asarray(prior.encode_image(prior_params, moved_views(prompt, config, cams,
                                                                                   backgrounds, offset)))
  c, up, out = config.sds, np.asarray([0.0, 1.0, 0.0]), {}
  for name, sign in (("raised", 1.0), ("lowered", -1.0)):
    at = sign * distance * up
    descent = expected_descent(prior, prior_params, jnp.asarray(encode(at)), cond, uncond,
                               float(c.guidance_scale), float(c.t_min), float(c.t_max),
                               jax.random.fold_in(key, 1), draws, c.weighting, c.threshold,
                               float(c.denoise_weight), camera)
    jacobian = (encode(at + MOVE_STEP * up) - encode(at - MOVE_STEP * up)) / (2.0 * MOVE_STEP)
    out[name] = float(np.mean(translation_rate(descent, jacobian)))
  out["restoring"] = 0.5 * (out["raised"] - out["lowered"])
  return out


def measure(config, prior, prior_params, prompt: str, num_views: int, draws: int, seed: int = 0) -> dict:
  """fog / growth / fade of `prompt`'s true object under config.sds, over all the views."""
  return measure_by_scale(config, prior, prior_params, prompt, num_views, draws, seed, groups=1)[0]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--config", default="configs/shapes.py",
                      help="its cameras, sds guidance / t range / weighting and prompt settings")
  parser.add_argument("--weights", default=sample.WEIGHTS_DIR, help="diffusers-layout pixel prior")
  parser.add_argument("--prompts", default=None,
                      help="comma-separated world captions (default: the benchmark's 12)")
  # Most of the spread is between views (cameras, backgrounds), not draws: 32 x 12 repeats a prompt's
  # growth to within 0.02 across seeds where 8 x 48, the same UNet calls, moved it by up to 0.04.
  parser.add_argument("--views", type=int, default=32, help="training views per prompt")
  parser.add_argument("--draws", type=int, default=12, help="draws of (t, eps) per view")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="a config field to change, e.g. --set nerf.background_saturation=0.5 (repeatable)")
  parser.add_argument("--denoise-weight", type=float, default=None,
                      help="sds.denoise_weight to measure instead of the config's (1: SDS, 0: the guidance "
                           "term alone)")
  parser.add_argument("--by-scale", action="store_true",
                      help="also growth and fade per third of the views by the object's apparent size")
  parser.add_argument("--position", type=float, default=None, metavar="D",
                      help="also the push on the true object raised and lowered by D (world units; 0.087 is "
                           "3 cells of the benchmark's grid): does the prior hold it at its height")
  args = parser.parse_args()
  prompts = captions.prompt_list(args.prompts)  # unknown words fail before any work
  if args.views < 1 or args.draws < 1:
    parser.error(f"--views and --draws must be >= 1, got {args.views}, {args.draws}")
  if args.by_scale and args.views < 3:
    parser.error(f"--by-scale splits the views into thirds: --views must be >= 3, got {args.views}")
  if args.position is not None and not 0.0 < args.position <= 0.5:
    parser.error(f"--position is the distance the object is moved, in (0, 0.5] world units, got {args.position}")
  config = config_files.load(args.config)
  try:
    config_files.apply_overrides(config, args.set)
  except (ValueError, TypeError) as e:
    parser.error(str(e))
  config.prompt = prompts[0]  # the check wants one; each prompt is measured in turn
  if args.denoise_weight is not None:
    config.sds.denoise_weight = args.denoise_weight
  found = config_check.problems(config)
  if found:
    parser.error(f"{args.config} with these flags: " + " ".join(found))  # --denoise-weight sets sds.denoise_weight
  try:
    prior, params = stable_diffusion.load_prior(args.weights, "float32", local_files_only=True)
  except errors.PriorNotFoundError as e:
    parser.error(f"--weights: {e}")
  if prior.kind != "pixel":
    parser.error(f"--weights must be a pixel-space prior (the world's), got a {prior.kind!r} one")
  c = config.sds
  print(f"SDS at CFG {c.guidance_scale}, t in [{c.t_min}, {c.t_max}], weighting {c.weighting}, "
        f"denoise weight {c.denoise_weight}; backgrounds {config.nerf.background}, saturation "
        f"{config.nerf.background_saturation}; "
        f"{args.views} views x {args.draws} draws per prompt; prior {args.weights}")
  print("| prompt | fog | growth | fade |\n|---|---|---|---|")
  rows, thirds, start = [], [], time.time()
  for prompt in prompts:
    row, by = measure_by_scale(config, prior, params, prompt, args.views, args.draws, args.seed,
                               groups=3 if args.by_scale else 1)
    rows.append(row)
    thirds.append(by)
    print(f"| {prompt} | " + " | ".join(f"{row[m]:+.4f}" for m in MEASURES) + " |", flush=True)
  print("| mean | " + " | ".join(f"{np.mean([r[m] for r in rows]):+.4f}" for m in MEASURES) + " |")
  if args.by_scale:
    print("\nBy the object's apparent size, thirds of each prompt's views (small / middle / large):\n"
          "| prompt | growth small | growth middle | growth large | fade small | fade middle | fade large |\n"
          "|---|---|---|---|---|---|---|")
    cells = lambda by: " | ".join(f"{g[m]:+.4f}" for m in ("growth", "fade") for g in by)
    for prompt, by in zip(prompts, thirds):
      print(f"| {prompt} | {cells(by)} |")
    mean = [{m: np.mean([by[g][m] for by in thirds]) for m in MEASURES} for g in range(3)]
    print(f"| mean | {cells(mean)} |")
  if args.position is not None:
    print(f"\nThe true object moved up / down by {args.position}: the step's vertical move there (world units "
          "per unit step; restoring < 0 holds it at its height):\n| prompt | raised | lowered | restoring |\n"
          "|---|---|---|---|")
    moves = []
    for prompt in prompts:
      moves.append(measure_position(config, prior, params, prompt, args.views, args.draws, args.position,
                                    args.seed))
      print(f"| {prompt} | " + " | ".join(f"{moves[-1][m]:+.4f}" for m in POSITION_MEASURES) + " |", flush=True)
    print("| mean | " + " | ".join(f"{np.mean([r[m] for r in moves]):+.4f}" for m in POSITION_MEASURES) + " |")
  print(f"{len(prompts)} prompts in {time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
