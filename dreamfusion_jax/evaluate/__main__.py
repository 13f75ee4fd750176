r"""The benchmark: train a prompt set with SDS, SJC and ISM and score every result against ground truth.

  python -m dreamfusion_jax.evaluate --config configs/shapes.py --workdir runs/eval \
      [--methods sds,sjc,ism] [--seeds 0,1] [--prompts "a red cube,a blue torus"] [--config.num_steps=N]
      [--retrieval_prompts default]  # score part of the default set among all 12 captions

Each (method, prompt, seed) trains into WORKDIR/<method>/<prompt>/seed_<k> (finished runs are reused, so
an interrupted benchmark resumes; a folder whose run was trained under another config, say another prior
or --config.num_steps, is refused before any work, naming the fields), then is scored: R-precision
"color" on albedo renders and "geo" on textureless renders from `--views` views at 30 degrees elevation
(the judge of the embedded world, or a CLIP with --clip=DIR), and the IoU of its occupancy with the
ground-truth shape, maximised over rotations about the vertical axis ("empty fields": runs where no ray
of the field reaches opacity 1/2, scored IoU 0; their R-precision then judges the background alone).
Beside it, as a diagnostic, the IoU at the best size and that size ("size": the NeRF's object over the
true one, a geometric mean over the non-empty runs), which tell a shape drawn too large from a wrong
shape; likewise the IoU at the best position (the truth moved by up to geometry.MAX_OFFSET along each
axis) and that offset ("offset": its mean length in world units over the non-empty runs), which tell a
right shape in the wrong place from a wrong shape. The table's first row scores the world's true
objects in the same views: what a perfect NeRF would get, the judge's ceiling. A second table splits
where the IoU is lost, as fractions of the true volume: true cells left empty ("missing") and solid
cells outside the truth, below its lowest cell, beside it, or above its highest. Prints the tables and
writes WORKDIR/results.json and results.md, and WORKDIR/views.png: one row per run, its albedo views
then its textureless views (the scored renders).

`--shard k/n` runs every n-th run from the k-th, so n processes (one per core or machine; on a CPU
with XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", one thread each,
or they fight over the cores: README "Other entry points") share one benchmark; each writes
results_k_of_n.json/.md, and a last unsharded call reuses every run for the full table. A run's scores
are saved beside it (scores.json, scored_views.npy) with what they were scored with (the judge's hash
or the CLIP folder, the prompt set, the number of views), so that call re-scores only what changed.
Results files of an earlier call that ran other runs (other --methods, --seeds, --prompts or
--retrieval_prompts) are not overwritten: they are renamed results.earlier1.json (.md, and its
views.earlier1.png), and so on.
"""

import copy
import json
import os
import re

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from dreamfusion_jax import distill
from dreamfusion_jax import refusals
from dreamfusion_jax import step as step_lib
from dreamfusion_jax import summaries
from dreamfusion_jax import train
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.evaluate import compare
from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.evaluate import r_precision
from dreamfusion_jax.export import images as images_lib
from dreamfusion_jax.export import mesh as mesh_lib
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import field
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import sdf
from dreamfusion_jax.shapes import world

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (configs/shapes.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of all runs and the results.")
_METHODS = flags.DEFINE_list("methods", ["sds", "sjc", "ism"], "Distillation losses to compare.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds per prompt.")
_PROMPTS = flags.DEFINE_list("prompts", None, "Prompts (default: 12 covering every shape and colour).")
_RETRIEVAL = flags.DEFINE_list(
    "retrieval_prompts", None, "Captions each render is retrieved among (default: --prompts; 'default': "
    "the 12 default prompts). Give the full set when --prompts is part of it, so that the part scores "
    "as it does in the whole.")
_VIEWS = flags.DEFINE_integer("views", 8, "Views around the object per score.")
_SHARD = flags.DEFINE_string("shard", "0/1", "k/n: run only every n-th run from the k-th, so n processes "
                             "share one benchmark (retrieval is still among all --prompts).")
_CLIP = flags.DEFINE_string("clip", None, "Score with a real CLIP (FlaxCLIPModel folder) instead of the judge.")
flags.mark_flags_as_required(["config", "workdir"])

# "haze": the mean opacity of the scored albedo views' four corner squares, each 1/8 of the side. No true
# object of the world reaches them in those views (a test holds this), so on a perfect NeRF it is 0; a
# low-density cloud around the object shows up here while the IoU, at the opaque surface, misses it.
HAZE_CORNER_FRACTION = 1 / 8
SCORE_FIELDS = ("r_color", "r_geo", "iou", "iou_best_size", "size", "iou_best_position", "offset", "empty",
                "haze", *geometry.VOLUME_ERRORS)
SCORES_FILE = "scores.json"  # in a run folder: its scores, and what they were scored with
VIEWS_FILE = "scored_views.npy"  # ... and the scored renders, for views.png


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class Interrupted(RuntimeError):
  """A run stopped before its last step (SIGTERM, preemption): it is checkpointed, not scored."""


def finished_summary(workdir: str):
  """summary.json of `workdir` if its run finished, else None."""
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
  except FileNotFoundError:
    return None
  return summary if summary.get("finished") else None


def run_config(config, method: str, prompt: str, seed):
  """The config of one benchmark run: `config` with its method, prompt and seed, and no exports."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.distill, c.prompt, c.seed = method, prompt, int(seed)
    c.export.formats = ()
  return c


def run_folder(workdir: str, method: str, prompt: str, seed) -> str:
  return os.path.join(workdir, method, _slug(prompt), f"seed_{seed}")


def check_runs_match(config, workdir: str, jobs) -> None:
  """Refuses, before any work, run folders of `jobs` that hold a run trained (or begun) under another config.

  The benchmark reuses finished runs and resumes interrupted ones; under a changed setting (another
  prior, step count, loss weight, ...) either would report what the folder holds as the new setting's
  result. Fields that change nothing trained (workdir.UNTRAINED_KEYS: logging, exports) may differ.

  Raises:
    workdir_lib.WorkdirError: naming each such folder and its differing fields, saved and now.
  """
  stale = []
  for method, prompt, seed in jobs:
    folder = run_folder(workdir, method, prompt, seed)
    saved = workdir_lib.load_config(folder)
    if saved is None:
      continue
    diffs = workdir_lib.training_differences(saved, run_config(config, method, prompt, seed))
    if diffs:
      stale.append(f"  {folder}:\n" + "\n".join(f"    {name}: {a!r} (saved) -> {b!r} (now)"
                                                for name, a, b in diffs))
  if stale:
    raise workdir_lib.WorkdirError(
        f"--workdir {workdir!r} holds {len(stale)} run(s) trained under another config, which the benchmark "
        "would reuse or resume as this config's result:\n" + "\n".join(stale) + "\nPass a new --workdir "
        "for this setting, delete those run folders to retrain them, or restore the saved values.")


def train_or_reuse(config, workdir: str):
  """Params of a finished run in `workdir`, training it first if needed.

  Raises Interrupted when the training stops early (SIGTERM): the benchmark stops there instead of
  scoring a half-trained run; the same command resumes it from its checkpoint.
  """
  summary = finished_summary(workdir)
  if summary is not None:
    return export_run.restore_final_params(workdir)[0], summary
  state = train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  if not summary.get("finished"):
    raise Interrupted(f"{workdir} stopped at step {summary.get('steps')} of {config.num_steps} "
                      "(checkpointed); run the same command again to resume it and the rest of the benchmark")
  return jax.device_get(step_lib.final_params(state)), summary


def corner_opacity(opacity) -> float:
  """Mean opacity of the four corner squares (side HAZE_CORNER_FRACTION of the frame) of [V, H, W] views."""
  opacity = np.asarray(opacity)
  k = max(1, int(round(opacity.shape[1] * HAZE_CORNER_FRACTION)))
  corners = [opacity[:, :k, :k], opacity[:, :k, -k:], opacity[:, -k:, :k], opacity[:, -k:, -k:]]
  return float(np.mean(np.stack(corners)))


def score_run(config, params, prompt: str, prompts: list, scorers: dict, num_views: int):
  """(scores, renders) of one trained scene.

  scores: R-precision color / geo, the IoU of its occupancy with the truth, and the haze (the scored
  views' corner opacity); renders: the scored albedo views followed by the textureless ones,
  [2 * num_views, H, W, 3].
  """
  scene = field.make_scene(config)
  resolution = int(config.render.resolution)
  render_fn, _ = export_run.make_render_fn(config, scene, params, jax.random.PRNGKey(0), resolution)
  cams = r_precision.scoring_cameras(config, num_views, resolution)
  albedo_out = render_fn(cams, shading.ALBEDO)
  albedo = albedo_out.rgb
  textureless = render_fn(cams, shading.TEXTURELESS).rgb
  truth = [prompts.index(prompt)] * num_views
  shape, _ = captions.parse_prompt(prompt)
  density_fn, _ = export_run.field_fns(scene, params)
  bound = float(config.nerf.bound)
  truth_fn = jax.jit(lambda p: sdf.occupancy(shape, p))
  try:
    occupied = geometry.nerf_occupancy(density_fn, bound, geometry.IOU_RESOLUTION)
    sized = geometry.best_yaw_scale_iou(occupied, truth_fn, bound)
    placed = geometry.best_position_iou(occupied, truth_fn, bound, sized["true_size_yaw_degrees"])
    geo = {"iou": sized["true_size_iou"], "iou_best_size": sized["iou"], "size": sized["scale"],
           "iou_best_position": placed["iou"], "offset": placed["offset"], "empty": False,
           **geometry.volume_errors(occupied, truth_fn, bound, sized["true_size_yaw_degrees"])}
  except mesh_lib.EmptyFieldError:  # nothing rendered opaque: no overlap with the shape, and no size
    nothing = np.zeros((geometry.IOU_RESOLUTION,) * 3, bool)
    geo = {"iou": 0.0, "iou_best_size": 0.0, "size": None, "iou_best_position": 0.0, "offset": None,
           "empty": True,
           **geometry.volume_errors(nothing, truth_fn, bound, 0.0)}
  scores = {"r_color": r_precision.r_precision(scorers["color"], albedo, truth, prompts),
            "r_geo": r_precision.r_precision(scorers["geo"], textureless, truth, prompts),
            "haze": corner_opacity(albedo_out.opacity), **geo}
  return scores, np.concatenate([np.asarray(albedo), np.asarray(textureless)])


def score_truth(config, prompt: str, prompts: list, scorers: dict, num_views: int) -> dict:
  """R-precision color / geo of the world's true object for `prompt` in the views score_run renders.

  What a perfect NeRF would score: the judge's ceiling on the benchmark, printed beside the methods.
  """
  cams = r_precision.scoring_cameras(config, num_views, int(config.render.resolution))
  render = lambda mode: world.render_prompt(prompt, cams, mode, float(config.shading.ambient),
                                            float(config.shading.diffuse))[0]
  truth = [prompts.index(prompt)] * num_views
  return {"r_color": r_precision.r_precision(scorers["color"], render(shading.ALBEDO), truth, prompts),
          "r_geo": r_precision.r_precision(scorers["geo"], render(shading.TEXTURELESS), truth, prompts)}


def score_key(scorers: dict, prompts, num_views: int, summary: dict) -> dict:
  """What a run's saved scores hold for: the scorer (scorers["id"]), prompt set, view count and grid,
  and the finished run itself (its steps and wall time: a run retrained into the folder is re-scored)."""
  return dict(scorer=scorers.get("id"), prompts=list(prompts), views=num_views,
              iou_resolution=geometry.IOU_RESOLUTION, steps=summary["steps"],
              wall_time_s=summary["wall_time_s"])


def load_scores(run_dir: str, key: dict):
  """(scores, views) saved in `run_dir` under the same `key`, else None (also without a scorer id)."""
  if not key["scorer"]:
    return None
  try:
    with open(os.path.join(run_dir, SCORES_FILE)) as f:
      saved = json.load(f)
    if saved.get("key") != key or any(k not in saved["scores"] for k in SCORE_FIELDS):
      return None  # scored under something else, or before a score existed
    return saved["scores"], np.load(os.path.join(run_dir, VIEWS_FILE))
  except (OSError, ValueError, KeyError):  # absent, or cut short by a crash: score again
    return None


def save_scores(run_dir: str, key: dict, scores: dict, views: np.ndarray) -> None:
  """Writes the views, then scores.json (each replaced whole: a crash leaves the old pair or no match);
  nothing without a scorer id."""
  if not key["scorer"]:
    return
  tmp = os.path.join(run_dir, VIEWS_FILE + ".tmp.npy")
  np.save(tmp, np.asarray(views, np.float32))
  os.replace(tmp, os.path.join(run_dir, VIEWS_FILE))
  tmp = os.path.join(run_dir, SCORES_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump({"key": key, "scores": scores}, f, indent=2)
  os.replace(tmp, os.path.join(run_dir, SCORES_FILE))


def parse_shard(text: str) -> tuple[int, int]:
  """'k/n' -> (k, n) with 0 <= k < n; raises ValueError naming --shard otherwise."""
  try:
    k, n = (int(x) for x in text.split("/"))
  except ValueError:
    k, n = -1, 0
  if not 0 <= k < n:
    raise ValueError(f"--shard must read k/n with 0 <= k < n (worker k of n), got {text!r}")
  return k, n


def benchmark_jobs(methods, prompts, seeds, shard: tuple[int, int] = (0, 1)) -> list:
  """The (method, prompt, seed) runs of shard (k, n): every n-th of them all, from the k-th."""
  k, n = shard
  return [(m, p, s) for m in methods for p in prompts for s in seeds][k::n]


def check_retrieval(prompts, retrieval) -> None:
  """Raises ValueError unless every benchmark prompt is among the retrieval captions."""
  missing = [p for p in prompts if p not in retrieval]
  if missing:
    raise ValueError(f"--retrieval_prompts must hold every prompt of --prompts; missing {missing}")


def output_names(shard: tuple[int, int]) -> tuple[str, str]:
  """(results file stem, views file name) of shard (k, n) in the workdir."""
  k, n = shard
  return ("results", "views.png") if n == 1 else (f"results_{k}_of_{n}", f"views_{k}_of_{n}.png")


def set_aside_other_results(workdir: str, shard: tuple[int, int], jobs: list, retrieval: list) -> list:
  """Renames the results and views of an earlier call for this shard if it ran other runs than `jobs`
  or retrieved among other captions, so they are kept instead of overwritten. Returns the new paths.

  Views without results (a call stopped between writing them, or before writing its results) are not
  known to be this call's either, so they are set aside too.
  """
  stem, views = output_names(shard)
  try:
    with open(os.path.join(workdir, stem + ".json")) as f:
      earlier = json.load(f)
  except FileNotFoundError:
    if not os.path.exists(os.path.join(workdir, views)):
      return []
    earlier = {}
  except ValueError:  # unreadable: not known to be this call's, so kept
    earlier = {}
  if earlier.get("jobs") == [list(j) for j in jobs] and earlier.get("retrieval") == list(retrieval):
    return []  # the same benchmark run again: its files are updated
  names = lambda i: ((stem + ".json", f"{stem}.earlier{i}.json"), (stem + ".md", f"{stem}.earlier{i}.md"),
                     (views, views.replace(".png", f".earlier{i}.png")))
  i = 1
  while any(os.path.exists(os.path.join(workdir, new)) for _, new in names(i)):
    i += 1
  moved = []
  for name, new in names(i):
    if os.path.exists(os.path.join(workdir, name)):
      os.replace(os.path.join(workdir, name), os.path.join(workdir, new))
      moved.append(os.path.join(workdir, new))
  return moved


def run_benchmark(config, workdir, methods, seeds, prompts, num_views, scorers,
                  shard: tuple[int, int] = (0, 1), retrieval=None) -> dict:
  """Trains and scores every (method, prompt, seed); returns per-run rows and per-method means.

  shard (k, n): only every n-th run from the k-th, so n processes share a benchmark; retrieval is
  still among all `prompts`, so the shards' rows are final and a later unsharded pass reuses every
  run. Also scores the world's true objects ("truth", once per prompt) and writes WORKDIR/views.png
  (views_K_of_N.png for shard K of N), a row of scored renders per run in the order of the rows.
  scorers: {"color": Scorer, "geo": Scorer} and optionally "id", naming them: with an id each run's
  scores are saved beside it and reused by later calls under the same id, prompts and views.
  retrieval: the captions R-precision retrieves among (default: `prompts`; must hold all of them).
  """
  retrieval = list(retrieval or prompts)
  check_retrieval(prompts, retrieval)
  jobs = benchmark_jobs(methods, prompts, seeds, shard)
  check_runs_match(config, workdir, jobs)
  mine = dict.fromkeys(p for _, p, _ in jobs)  # this shard's prompts, in order
  truth = {p: score_truth(config, p, retrieval, scorers, num_views) for p in mine}
  views_png = os.path.join(workdir, output_names(shard)[1])
  rows, renders = [], []
  for method, prompt, seed in jobs:
    c = run_config(config, method, prompt, seed)
    run_dir = run_folder(workdir, method, prompt, seed)
    # A finished run with scores saved under the same key is read back without restoring its params.
    summary = finished_summary(run_dir)
    saved = load_scores(run_dir, score_key(scorers, retrieval, num_views, summary)) if summary else None
    if saved is None:
      params, summary = train_or_reuse(c, run_dir)
      scores, views = score_run(c, params, prompt, retrieval, scorers, num_views)
      save_scores(run_dir, score_key(scorers, retrieval, num_views, summary), scores, views)
    else:
      scores, views = saved
    row = dict(method=method, prompt=prompt, seed=int(seed), steps=summary["steps"],
               wall_time_s=summary["wall_time_s"], **scores)
    rows.append(row)
    renders.append(views)
    # Rewritten after every run (a small PNG) so a benchmark stopped hours in still has its picture.
    images_lib.save_png(views_png, images_lib.make_grid(renders))
    print(json.dumps(row), flush=True)
  table = {m: means(r for r in rows if r["method"] == m)
           for m in methods if any(r["method"] == m for r in rows)}  # a shard may hold none of a method
  done = {"rows": rows, "table": table, "jobs": [list(j) for j in jobs], "retrieval": retrieval}
  if not truth:  # a shard with no runs (more workers than runs)
    return dict(done, truth=None)
  truth_mean = {k: float(np.mean([t[k] for t in truth.values()])) for k in ("r_color", "r_geo")}
  return dict(done, truth=dict(truth_mean, prompts=truth))


def means(rows) -> dict:
  """One table row from per-run rows: means of the scores, geometric mean of the non-empty sizes."""
  rows = list(rows)
  out = {k: float(np.mean([r[k] for r in rows]))
         for k in ("r_color", "r_geo", "iou", "iou_best_size", "empty", "steps", "wall_time_s")}
  sizes = [r["size"] for r in rows if not r["empty"]]  # an empty field has no size
  out["size"] = float(np.exp(np.mean(np.log(sizes)))) if sizes else None
  hazes = [r["haze"] for r in rows if r.get("haze") is not None]  # rows saved before it was scored lack it
  out["haze"] = float(np.mean(hazes)) if len(hazes) == len(rows) else None
  out["iou_best_position"], out["offset"] = compare.position_means(rows)  # likewise
  for k in geometry.VOLUME_ERRORS:  # likewise for rows saved before the IoU's error split was scored
    values = [r[k] for r in rows if r.get(k) is not None]
    out[k] = float(np.mean(values)) if values and len(values) == len(rows) else None
  out["runs"] = len(rows)
  return out


def markdown_table(table: dict, truth=None) -> str:
  """The per-method means; `truth` (run_benchmark's) adds the true objects' row, the judge's ceiling."""
  lines = ["| method | R-precision color | R-precision geo | IoU | IoU at best size | size "
           "| IoU at best position | offset | haze | empty fields | steps | wall time / run (s) | runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  if truth is not None:
    lines.append(f"| true objects | {truth['r_color']:.2f} | {truth['r_geo']:.2f} | 1.00 | 1.00 | 1.00 | "
                 f"1.00 | 0.000 | 0.00 | 0% | - | - | {len(truth['prompts'])} prompts |")
  fmt = lambda value, spec: "-" if value is None else format(value, spec)
  for method, m in table.items():
    lines.append(f"| {method} | {m['r_color']:.2f} | {m['r_geo']:.2f} | {m['iou']:.2f} | "
                 f"{m['iou_best_size']:.2f} | {fmt(m['size'], '.2f')} | "
                 f"{fmt(m.get('iou_best_position'), '.2f')} | {fmt(m.get('offset'), '.3f')} | "
                 f"{fmt(m.get('haze'), '.2f')} | {m['empty']:.0%} | {m['steps']:.0f} | "
                 f"{m['wall_time_s']:.0f} | {m['runs']} |")
  return "\n".join(lines)


def volume_errors_table(table: dict) -> str:
  """Where each method's IoU is lost (geometry.volume_errors' means, as fractions of the true volume);
  methods whose rows lack them are left out, and with none left only the header is returned."""
  lines = ["| method | IoU | missing | extra below | extra beside | extra above | runs |",
           "|---|---|---|---|---|---|---|"]
  for method, m in table.items():
    if all(m.get(k) is not None for k in geometry.VOLUME_ERRORS):
      lines.append(f"| {method} | {m['iou']:.2f} | "
                   + " | ".join(f"{m[k]:.2f}" for k in geometry.VOLUME_ERRORS) + f" | {m['runs']} |")
  return "\n".join(lines)


@refusals.as_messages()
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summaries.quiet_library_logs()
  prompts = _PROMPTS.value or captions.default_prompts()
  unknown = [m for m in _METHODS.value if m not in distill.LOSSES]
  if unknown:
    raise app.UsageError(f"--methods has {unknown}: allowed are {', '.join(distill.LOSSES)}")
  retrieval = _RETRIEVAL.value or prompts
  if retrieval == ["default"]:
    retrieval = captions.default_prompts()
  for flag, values in (("--prompts", prompts), ("--retrieval_prompts", retrieval)):
    for p in values:
      try:
        captions.parse_prompt(p)  # unknown prompts fail here, before any training
      except ValueError as e:
        raise app.UsageError(f"{flag}: {e}") from e
  try:
    check_retrieval(prompts, retrieval)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    shard = parse_shard(_SHARD.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if _CLIP.value:
    clip = r_precision.clip_scorer(_CLIP.value)
    scorers = {"color": clip, "geo": clip, "id": "clip:" + os.path.abspath(_CLIP.value)}
  else:
    scorers = {"color": r_precision.judge_scorer(("shape", "colour")),
               "geo": r_precision.judge_scorer(("shape",)), "id": r_precision.judge_id()}
  os.makedirs(_WORKDIR.value, exist_ok=True)
  jobs = benchmark_jobs(_METHODS.value, prompts, _SEEDS.value, shard)
  check_runs_match(_CONFIG.value, _WORKDIR.value, jobs)
  for path in set_aside_other_results(_WORKDIR.value, shard, jobs, list(retrieval)):
    print(f"kept an earlier benchmark's file (other runs) as {path}", flush=True)
  try:
    results = run_benchmark(_CONFIG.value, _WORKDIR.value, _METHODS.value, _SEEDS.value, prompts,
                            _VIEWS.value, scorers, shard, retrieval)
  except Interrupted as e:
    print(f"benchmark interrupted: {e}", flush=True)
    raise SystemExit(1) from e
  name = output_names(shard)[0]
  with open(os.path.join(_WORKDIR.value, name + ".json"), "w") as f:
    json.dump(results, f, indent=2)
  text = "\n\n".join([markdown_table(results["table"], results["truth"]),
                       "Where the IoU is lost (fractions of the true volume; per run, "
                       "IoU = (1 - missing) / (1 + the extras)):", volume_errors_table(results["table"])])
  with open(os.path.join(_WORKDIR.value, name + ".md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
