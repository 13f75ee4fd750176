r"""The benchmark: train a prompt set with SDS, SJC and ISM and score every result against ground truth.

  python -m dreamfusion_jax.evaluate --config configs/shapes.py --workdir runs/eval \
      [--methods sds,sjc,ism] [--seeds 0,1] [--prompts "a red cube,a blue torus"] [--config.num_steps=N]

Each (method, prompt, seed) trains into WORKDIR/<method>/<prompt>/seed_<k> (finished runs are reused,
so an interrupted benchmark resumes), then is scored: R-precision "color" on albedo renders and "geo"
on textureless renders from `--views` views at 30 degrees elevation (the judge of the embedded world,
or a CLIP with --clip=DIR), and the IoU of its occupancy with the ground-truth shape, maximised over
rotations about the vertical axis ("empty fields": runs where no ray of the field reaches opacity 1/2,
scored IoU 0; their R-precision then judges the background alone). Beside it, as a diagnostic, the IoU
at the best size and that size ("size": the NeRF's object over the true one, a geometric mean over
the non-empty runs), which tell a shape drawn too large from a wrong shape. Prints one table and writes
WORKDIR/results.json and results.md, and WORKDIR/views.png: one row per run, its albedo views then its
textureless views (the scored renders).
"""

import copy
import json
import os
import re

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from dreamfusion_jax import checkpoint
from dreamfusion_jax import distill
from dreamfusion_jax import summaries
from dreamfusion_jax import train
from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.evaluate import r_precision
from dreamfusion_jax.export import images as images_lib
from dreamfusion_jax.export import mesh as mesh_lib
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import camera
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sdf

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (configs/shapes.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of all runs and the results.")
_METHODS = flags.DEFINE_list("methods", ["sds", "sjc", "ism"], "Distillation losses to compare.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds per prompt.")
_PROMPTS = flags.DEFINE_list("prompts", None, "Prompts (default: 12 covering every shape and colour).")
_VIEWS = flags.DEFINE_integer("views", 8, "Views around the object per score.")
_CLIP = flags.DEFINE_string("clip", None, "Score with a real CLIP (FlaxCLIPModel folder) instead of the judge.")
flags.mark_flags_as_required(["config", "workdir"])

EVAL_ELEVATION = 30.0  # DreamFusion scores renders at 30 degrees elevation
IOU_RESOLUTION = 64  # occupancy grid per side for the geometry score


def default_prompts(count: int = 12) -> list:
  """`count` distinct prompts cycling through every shape, with colours stepped so all eight appear.

  The colour steps by 3 (coprime to 8) and shifts by one on each further pass over the shapes, so no
  (shape, colour) pair repeats: a repeated caption would make R-precision's retrieval ambiguous.
  """
  shapes, names = captions.SHAPES, captions.COLOUR_NAMES
  if not 0 < count <= len(shapes) * len(names):
    raise ValueError(f"count must be in 1..{len(shapes) * len(names)}, got {count}")
  return [captions.caption(shapes[i % len(shapes)], names[(3 * i + i // len(shapes)) % len(names)])
          for i in range(count)]


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def train_or_reuse(config, workdir: str):
  """Params of a finished run in `workdir`, training it first if needed."""
  summary_path = os.path.join(workdir, "summary.json")
  if os.path.exists(summary_path) and json.load(open(summary_path)).get("finished"):
    params, _ = checkpoint.restore_params(workdir)
    return params, json.load(open(summary_path))
  state = train.train_and_evaluate(config, workdir)
  return jax.device_get(state.params), json.load(open(summary_path))


def score_run(config, params, prompt: str, prompts: list, scorers: dict, num_views: int):
  """(scores, renders) of one trained scene.

  scores: R-precision color / geo and the IoU of its occupancy with the truth; renders: the scored
  albedo views followed by the textureless ones, [2 * num_views, H, W, 3].
  """
  scene = field.make_scene(config)
  resolution = int(config.render.resolution)
  render_fn, _ = export_run.make_render_fn(config, scene, params, jax.random.PRNGKey(0), resolution)
  cams = camera.orbit(num_views, resolution, elevation=EVAL_ELEVATION,
                      distance=float(np.mean(config.camera.distance_range)))
  albedo = render_fn(cams, shading.ALBEDO).rgb
  textureless = render_fn(cams, shading.TEXTURELESS).rgb
  truth = [prompts.index(prompt)] * num_views
  shape, _ = captions.parse_prompt(prompt)
  density_fn, _ = export_run.field_fns(scene, params)
  bound = float(config.nerf.bound)
  truth_fn = jax.jit(lambda p: sdf.occupancy(shape, p))
  try:
    occupied = geometry.nerf_occupancy(density_fn, bound, IOU_RESOLUTION)
    sized = geometry.best_yaw_scale_iou(occupied, truth_fn, bound)
    geo = {"iou": sized["true_size_iou"], "iou_best_size": sized["iou"], "size": sized["scale"],
           "empty": False}
  except mesh_lib.EmptyFieldError:  # nothing rendered opaque: no overlap with the shape, and no size
    geo = {"iou": 0.0, "iou_best_size": 0.0, "size": None, "empty": True}
  scores = {"r_color": r_precision.r_precision(scorers["color"], albedo, truth, prompts),
            "r_geo": r_precision.r_precision(scorers["geo"], textureless, truth, prompts), **geo}
  return scores, np.concatenate([np.asarray(albedo), np.asarray(textureless)])


def run_benchmark(config, workdir, methods, seeds, prompts, num_views, scorers) -> dict:
  """Trains and scores every (method, prompt, seed); returns per-run rows and per-method means.

  Also writes WORKDIR/views.png, a row of scored renders per run in the order of the rows.
  """
  rows, renders = [], []
  for method in methods:
    for prompt in prompts:
      for seed in seeds:
        c = copy.deepcopy(config)
        with c.unlocked():
          c.distill, c.prompt, c.seed = method, prompt, int(seed)
          c.export.formats = ()
        run_dir = os.path.join(workdir, method, _slug(prompt), f"seed_{seed}")
        params, summary = train_or_reuse(c, run_dir)
        row = dict(method=method, prompt=prompt, seed=int(seed), steps=summary["steps"],
                   wall_time_s=summary["wall_time_s"])
        scores, views = score_run(c, params, prompt, prompts, scorers, num_views)
        row.update(scores)
        rows.append(row)
        renders.append(views)
        # Rewritten after every run (a small PNG) so a benchmark stopped hours in still has its picture.
        images_lib.save_png(os.path.join(workdir, "views.png"), images_lib.make_grid(renders))
        print(json.dumps(row), flush=True)
  table = {}
  for method in methods:
    mine = [r for r in rows if r["method"] == method]
    table[method] = {k: float(np.mean([r[k] for r in mine]))
                     for k in ("r_color", "r_geo", "iou", "iou_best_size", "empty", "steps", "wall_time_s")}
    sizes = [r["size"] for r in mine if not r["empty"]]  # an empty field has no size
    table[method]["size"] = float(np.exp(np.mean(np.log(sizes)))) if sizes else None
    table[method]["runs"] = len(mine)
  return {"rows": rows, "table": table}


def markdown_table(table: dict) -> str:
  lines = ["| method | R-precision color | R-precision geo | IoU | IoU at best size | size | empty fields "
           "| steps | wall time / run (s) | runs |", "|---|---|---|---|---|---|---|---|---|---|"]
  for method, m in table.items():
    size = "-" if m["size"] is None else f"{m['size']:.2f}"
    lines.append(f"| {method} | {m['r_color']:.2f} | {m['r_geo']:.2f} | {m['iou']:.2f} | "
                 f"{m['iou_best_size']:.2f} | {size} | {m['empty']:.0%} | {m['steps']:.0f} | "
                 f"{m['wall_time_s']:.0f} | {m['runs']} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summaries.quiet_library_logs()
  prompts = _PROMPTS.value or default_prompts()
  unknown = [m for m in _METHODS.value if m not in distill.LOSSES]
  if unknown:
    raise app.UsageError(f"--methods has {unknown}: allowed are {', '.join(distill.LOSSES)}")
  for p in prompts:
    captions.parse_prompt(p)  # unknown prompts fail here, before any training
  if _CLIP.value:
    clip = r_precision.clip_scorer(_CLIP.value)
    scorers = {"color": clip, "geo": clip}
  else:
    scorers = {"color": r_precision.judge_scorer(("shape", "colour")),
               "geo": r_precision.judge_scorer(("shape",))}
  os.makedirs(_WORKDIR.value, exist_ok=True)
  results = run_benchmark(_CONFIG.value, _WORKDIR.value, _METHODS.value, _SEEDS.value, prompts,
                          _VIEWS.value, scorers)
  with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  text = markdown_table(results["table"])
  with open(os.path.join(_WORKDIR.value, "results.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
