"""R-precision semantics and the benchmark runner on a tiny prior."""

import copy
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dreamfusion_jax import checkpoint
from dreamfusion_jax import train
from dreamfusion_jax import workdir as workdir_lib
from dreamfusion_jax.evaluate import __main__ as evaluate_cli
from dreamfusion_jax.evaluate import geometry
from dreamfusion_jax.evaluate import r_precision
from dreamfusion_jax.export import images as images_lib
from dreamfusion_jax.nerf import shading
from dreamfusion_jax.prior import testing as prior_testing
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import judge
from dreamfusion_jax.shapes import world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))
import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_ties_count_as_hits_and_wrong_maxima_do_not():
  scores = np.array([[0.0, 1.0, 1.0],    # true 2 ties the max: hit (shape-only scores tie colours)
                     [3.0, 1.0, 2.0],    # true 0 is the max: hit
                     [0.0, 2.0, 1.0]])   # true 2 is below index 1: miss
  np.testing.assert_array_equal(r_precision.retrieval_hits(scores, [2, 0, 2]), [True, True, False])


def test_r_precision_is_the_hit_fraction():
  prompts = ["a red cube", "a blue cube", "a red sphere"]
  # A scorer that reads the colour of the centre pixel and knows every caption's colour.
  colour = {p: np.asarray(captions.COLOURS[captions.parse_prompt(p)[1]]) for p in prompts}
  scorer = lambda images, ps: -jnp.stack(
      [jnp.sum((images[:, 1, 1] - colour[p]) ** 2, -1) for p in ps], axis=-1)
  images = jnp.stack([jnp.broadcast_to(jnp.asarray(captions.COLOURS[c]), (3, 3, 3)) for c in ("red", "blue", "blue", "red")])
  # Red images tie "a red cube" with "a red sphere": both are hits for either caption.
  assert r_precision.r_precision(scorer, images, [0, 1, 0, 2], prompts) == pytest.approx(0.75)
  with pytest.raises(ValueError, match="true_index"):
    r_precision.r_precision(scorer, images, [0], prompts)


def test_default_prompts_cover_every_shape_and_colour():
  prompts = captions.default_prompts()
  parsed = [captions.parse_prompt(p) for p in prompts]
  assert len(prompts) >= 12
  assert len(set(prompts)) == len(prompts)  # a repeated caption makes retrieval ambiguous
  assert {s for s, _ in parsed} == set(captions.SHAPES)
  assert {c for _, c in parsed} == set(captions.COLOUR_NAMES)
  everything = captions.default_prompts(len(captions.SHAPES) * len(captions.COLOUR_NAMES))
  assert len(set(everything)) == len(everything)


def test_benchmark_trains_scores_and_reuses_runs(tmp_path):
  config = tiny.get_config()
  config.prior.model = prior_testing.tiny_prior_dir(tmp_path / "prior", "pixel")
  config.prompt = "placeholder"
  config.num_steps = 2
  prompts = ["a red cube", "a blue torus"]
  calls = []

  def scorer(images, ps):
    calls.append(images.shape)
    return jnp.zeros((images.shape[0], len(ps)))  # every caption ties: every retrieval is a hit

  scorers = {"color": scorer, "geo": scorer}
  out = evaluate_cli.run_benchmark(config, str(tmp_path / "eval"), ["sds"], ["0"], prompts[:1], 2, scorers)
  (row,) = out["rows"]
  assert row["steps"] == 2 and row["r_color"] == 1.0 and row["r_geo"] == 1.0
  assert 0.0 <= row["iou"] <= row["iou_best_size"] <= 1.0, "the size search includes the true size"
  assert row["iou"] <= row["iou_best_position"] <= 1.0, "the position search includes the true position"
  assert row["empty"] or max(abs(o) for o in row["offset"]) <= geometry.MAX_OFFSET + 1e-9
  assert row["empty"] or geometry.SCALES[0] <= row["size"] <= geometry.SCALES[-1]
  assert isinstance(row["empty"], bool) and (row["iou"] == 0.0 or not row["empty"])
  assert 0.0 <= row["haze"] <= 1.0 and out["table"]["sds"]["haze"] == pytest.approx(row["haze"])
  assert out["table"]["sds"]["empty"] == float(row["empty"])
  # Where the IoU is lost: it follows from the split (an empty field misses all of the true volume).
  extras = row["extra_below"] + row["extra_beside"] + row["extra_above"]
  assert row["iou"] == pytest.approx((1.0 - row["missing"]) / (1.0 + extras))
  assert 0.0 <= row["missing"] <= 1.0 and min(row[k] for k in geometry.VOLUME_ERRORS) >= 0.0
  # The true object's albedo and textureless views, then the run's: 2 views each.
  assert calls == [(2, 16, 16, 3)] * 4
  assert out["truth"]["prompts"]["a red cube"] == {"r_color": 1.0, "r_geo": 1.0}
  views = np.asarray(Image.open(tmp_path / "eval" / "views.png"))
  assert views.shape == (16, 4 * 16 + 3 * images_lib.GAP, 3)  # one run: 2 albedo + 2 textureless views
  summary = tmp_path / "eval" / "sds" / "a_red_cube" / "seed_0" / "summary.json"
  stamp = os.path.getmtime(summary)
  again = evaluate_cli.run_benchmark(config, str(tmp_path / "eval"), ["sds"], ["0"], prompts[:1], 2, scorers)
  assert os.path.getmtime(summary) == stamp, "a finished run is reused, not retrained"
  assert again["rows"][0]["iou"] == pytest.approx(row["iou"])
  assert "| sds | 1.00 | 1.00 |" in evaluate_cli.markdown_table(out["table"])
  assert "| true objects | 1.00 | 1.00 |" in evaluate_cli.markdown_table(out["table"], out["truth"])
  assert not os.path.exists(summary.parent / evaluate_cli.SCORES_FILE), "unnamed scorers save nothing"

  # Named scorers: the run's scores are saved beside it and read back under the same name, prompts and
  # views; anything else scores it again. Scorer "a" retrieves the red cube, "b" anything but.
  def named(score_id):
    def named_scorer(images, ps):
      calls.append(score_id)
      hits = jnp.asarray([p == "a red cube" for p in ps], jnp.float32)
      return jnp.broadcast_to(hits if score_id == "a" else 1.0 - hits, (images.shape[0], len(ps)))
    return {"color": named_scorer, "geo": named_scorer, "id": score_id}

  run = lambda scorers, ps, views=2: evaluate_cli.run_benchmark(
      config, str(tmp_path / "eval"), ["sds"], ["0"], ps, views, scorers, shard=(0, len(ps)))
  calls.clear()
  first = run(named("a"), prompts)  # shard 0 of 2: the red cube's run only
  assert first["rows"][0]["r_color"] == 1.0 and calls == ["a"] * 4  # truth and run, albedo and textureless
  views = np.asarray(Image.open(tmp_path / "eval" / "views_0_of_2.png"))
  calls.clear()
  again = run(named("a"), prompts)
  assert calls == ["a", "a"], "only the true objects are scored again, the run's scores are read back"
  assert again["rows"] == first["rows"]
  saved_path = summary.parent / evaluate_cli.SCORES_FILE
  saved = json.loads(saved_path.read_text())
  del saved["scores"]["haze"]  # scores saved before the haze was measured
  saved_path.write_text(json.dumps(saved))
  calls.clear()
  assert run(named("a"), prompts)["rows"] == first["rows"] and calls == ["a"] * 4, "scored again"
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "eval" / "views_0_of_2.png")), views)
  for ps, num_views in ((prompts, 2), (prompts[:1] + ["a red sphere"], 2), (prompts, 1)):
    calls.clear()
    out = run(named("b"), ps, num_views)
    assert calls == ["b"] * 4, "another scorer, prompt set or view count scores the run again"
    assert out["rows"][0]["r_color"] == 0.0
  assert os.path.getmtime(summary) == stamp

  # Part of a prompt set scored among the whole set's captions, as the whole set's benchmark scores it.
  seen = []

  def spy(images, ps):
    seen.append(tuple(ps))
    return jnp.zeros((images.shape[0], len(ps)))

  run_part = lambda retrieval: evaluate_cli.run_benchmark(
      config, str(tmp_path / "eval"), ["sds"], ["0"], prompts[:1], 2, {"color": spy, "geo": spy, "id": "spy"},
      retrieval=retrieval)
  run_part(prompts)
  assert seen == [tuple(prompts)] * 4
  with open(summary.parent / evaluate_cli.SCORES_FILE) as f:
    assert json.load(f)["key"]["prompts"] == prompts
  seen.clear()
  with pytest.raises(ValueError, match="missing"):
    run_part(["a blue torus"])  # the benchmark prompt is not among the captions
  assert not seen, "refused before any scoring"
  assert os.path.getmtime(summary) == stamp

  # A run trained under another setting is refused before any work, naming the field, instead of being
  # reported as the new setting's result; logging and exports change nothing trained and may differ.
  for field, value, message in (("num_steps", 3, r"num_steps: 2 \(saved\) -> 3 \(now\)"),
                                ("sds.guidance_scale", 7.0, r"sds.guidance_scale: .* -> 7.0 \(now\)")):
    changed = copy.deepcopy(config)
    section, _, name = field.rpartition(".")
    (changed[section] if section else changed)[name] = value
    seen.clear()
    with pytest.raises(workdir_lib.WorkdirError, match=message) as info:
      evaluate_cli.run_benchmark(changed, str(tmp_path / "eval"), ["sds"], ["0"], prompts[:1], 2,
                                 {"color": spy, "geo": spy, "id": "spy"}, retrieval=prompts)
    assert str(summary.parent) in str(info.value) and "new --workdir" in str(info.value)
    assert not seen, "refused before any scoring"
  relogged = copy.deepcopy(config)
  relogged.log.every, relogged.export.video_frames = 7, 5
  seen.clear()
  reused = evaluate_cli.run_benchmark(relogged, str(tmp_path / "eval"), ["sds"], ["0"], prompts[:1], 2,
                                      {"color": spy, "geo": spy, "id": "spy"}, retrieval=prompts)
  assert reused["rows"][0]["iou"] == pytest.approx(row["iou"]) and len(seen) == 2  # only the truth
  assert os.path.getmtime(summary) == stamp


def test_a_run_is_scored_with_its_moving_average_fresh_or_reused(tmp_path):
  config = tiny.get_config()
  config.prior.model = prior_testing.tiny_prior_dir(tmp_path / "prior", "pixel")
  config.prompt, config.num_steps, config.optim.ema_decay = "a red cube", 3, 0.5
  config.export.formats = ()
  run_dir = str(tmp_path / "run")
  fresh, _ = evaluate_cli.train_or_reuse(config, run_dir)
  stamp = os.path.getmtime(os.path.join(run_dir, "summary.json"))
  reused, _ = evaluate_cli.train_or_reuse(config, run_dir)
  assert os.path.getmtime(os.path.join(run_dir, "summary.json")) == stamp, "reused, not retrained"
  last_iterate, _ = checkpoint.restore_params(run_dir, item="params")
  leaves = lambda tree: [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
  for a, b in zip(leaves(fresh), leaves(reused)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
  assert max(np.abs(a - b).max() for a, b in zip(leaves(fresh), leaves(last_iterate))) > 1e-6, (
      "scored with the average, not the last iterate")


def test_an_interrupted_run_stops_the_benchmark_unscored_and_resumes(tmp_path, monkeypatch):
  """SIGTERM mid-run (here: a step budget, as train's tests stand in for it) must not yield a score."""
  config = tiny.get_config()
  config.prior.model = prior_testing.tiny_prior_dir(tmp_path / "prior", "pixel")
  config.prompt = "placeholder"
  config.num_steps = 3
  calls = []

  def scorer(images, ps):
    calls.append(images.shape)
    return jnp.zeros((images.shape[0], len(ps)))

  scorers = {"color": scorer, "geo": scorer, "id": "test"}
  run = lambda: evaluate_cli.run_benchmark(config, str(tmp_path / "eval"), ["sds"], ["0"], ["a red cube"], 1,
                                           scorers)
  real = train.train_and_evaluate
  monkeypatch.setattr(train, "train_and_evaluate", lambda c, w: real(c, w, stop_after=1))
  with pytest.raises(evaluate_cli.Interrupted, match=r"stopped at step 1 of 3 \(checkpointed\)"):
    run()
  run_dir = tmp_path / "eval" / "sds" / "a_red_cube" / "seed_0"
  assert len(calls) == 2 and not (run_dir / evaluate_cli.SCORES_FILE).exists()  # only the truth was scored
  monkeypatch.setattr(train, "train_and_evaluate", real)
  (row,) = run()["rows"]
  assert row["steps"] == 3 and json.load(open(run_dir / "summary.json"))["finished"] is True


def test_judge_id_names_the_weights_bytes(tmp_path):
  shipped = r_precision.judge_id()
  assert shipped.startswith("judge:") and len(shipped) == len("judge:") + 12
  shutil.copytree(judge.JUDGE_DIR, tmp_path / "judge")
  assert r_precision.judge_id(str(tmp_path / "judge")) == shipped
  with open(tmp_path / "judge" / "params.msgpack", "r+b") as f:
    last = f.seek(-1, os.SEEK_END)
    byte = f.read(1)
    f.seek(last)
    f.write(bytes([byte[0] ^ 1]))
  assert r_precision.judge_id(str(tmp_path / "judge")) != shipped


def test_benchmark_shard_with_no_runs_is_empty(tmp_path):
  config = tiny.get_config()
  config.prompt = "placeholder"
  idle = evaluate_cli.run_benchmark(config, str(tmp_path / "eval"), ["sds"], ["0"], ["a red cube"], 2,
                                    {"color": None, "geo": None}, shard=(1, 2))  # the only run is shard 0's
  assert idle == {"rows": [], "table": {}, "truth": None, "jobs": [], "retrieval": ["a red cube"]}
  assert evaluate_cli.markdown_table(idle["table"], idle["truth"]).count("\n") == 1  # header only


def test_shards_split_the_runs_without_overlap():
  args = (["sds", "ism"], ["a red cube", "a blue torus", "a green cone"], ["0", "1"])
  everything = evaluate_cli.benchmark_jobs(*args)
  assert len(everything) == 12
  shards = [evaluate_cli.benchmark_jobs(*args, shard=(k, 5)) for k in range(5)]
  assert sorted(sum(shards, [])) == sorted(everything)
  assert [len(s) for s in shards] == [3, 3, 2, 2, 2]
  assert evaluate_cli.parse_shard("1/3") == (1, 3)
  assert evaluate_cli.benchmark_jobs(*args, shard=(12, 13)) == []  # more workers than runs
  for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
    with pytest.raises(ValueError, match="--shard must read k/n"):
      evaluate_cli.parse_shard(bad)


def test_the_truth_scores_the_true_objects_albedo_and_textureless_views():
  config = tiny.get_config()
  prompts = ["a red cube", "a blue cube", "a red sphere"]
  # A scorer that retrieves the first prompt when the image centre is saturated and the second when
  # it is grey: the true red cube's albedo views (red at the centre) are hits, its textureless views
  # (grey, whatever their shading) misses.
  def scorer(images, ps):
    n = images.shape[1] // 2
    centre = images[:, n - 1:n + 1, n - 1:n + 1].mean(axis=(1, 2))
    saturated = (centre.max(-1) - centre.min(-1)) > 0.3
    return jnp.where(saturated[:, None], jnp.asarray([1.0, 0.0, 0.0]), jnp.asarray([0.0, 1.0, 0.0]))
  truth = evaluate_cli.score_truth(config, "a red cube", prompts, {"color": scorer, "geo": scorer}, 4)
  assert truth == {"r_color": 1.0, "r_geo": 0.0}
  truth = evaluate_cli.score_truth(config, "a blue cube", prompts, {"color": scorer, "geo": scorer}, 4)
  assert truth == {"r_color": 0.0, "r_geo": 1.0}


def test_means_average_scores_and_take_the_geometric_mean_of_non_empty_sizes():
  run = dict(r_color=1.0, r_geo=0.5, iou=0.6, iou_best_size=0.7, empty=False, steps=600, wall_time_s=10.0)
  rows = [dict(run, size=2.0), dict(run, size=0.5, r_geo=0.0),
          dict(run, size=None, empty=True, iou=0.0, iou_best_size=0.0)]
  m = evaluate_cli.means(rows)
  assert m["size"] == pytest.approx(1.0)  # sqrt(2 x 0.5): an empty field has no size
  assert m["empty"] == pytest.approx(1 / 3) and m["runs"] == 3
  assert m["r_geo"] == pytest.approx(1 / 3) and m["iou"] == pytest.approx(0.4)
  assert evaluate_cli.means([rows[2]])["size"] is None
  assert m["haze"] is None, "rows saved before the haze was scored: no haze mean"
  m = evaluate_cli.means([dict(r, haze=h) for r, h in zip(rows, (0.1, 0.2, 0.6))])
  assert m["haze"] == pytest.approx(0.3)
  assert "| 1.00 | - | - | 0.30 | 33% |" in evaluate_cli.markdown_table({"sds": m}), (
      "rows saved before the position was scored: no position columns")
  placed = [dict(iou_best_position=0.8, offset=[0.0, 0.03, 0.04]),
            dict(iou_best_position=0.6, offset=[0.0, 0.0, 0.0]),
            dict(iou_best_position=0.0, offset=None)]  # the empty field has no offset
  m = evaluate_cli.means([dict(r, **p) for r, p in zip(rows, placed)])
  assert m["iou_best_position"] == pytest.approx(1.4 / 3) and m["offset"] == pytest.approx(0.025)
  assert "| 1.00 | 0.47 | 0.025 | - |" in evaluate_cli.markdown_table({"sds": m})
  assert m["missing"] is None and evaluate_cli.volume_errors_table({"sds": m}).count("\n") == 1, (
      "rows saved before the IoU's split was scored: no split row")
  split = [dict(missing=0.1, extra_below=0.2, extra_beside=0.3, extra_above=0.0),
           dict(missing=0.3, extra_below=0.0, extra_beside=0.1, extra_above=0.4),
           dict(missing=1.0, extra_below=0.0, extra_beside=0.0, extra_above=0.0)]  # the empty field
  m = evaluate_cli.means([dict(r, **e) for r, e in zip(rows, split)])
  assert (m["missing"], m["extra_below"], m["extra_beside"], m["extra_above"]) == pytest.approx(
      (1.4 / 3, 0.2 / 3, 0.4 / 3, 0.4 / 3))
  assert "| sds | 0.40 | 0.47 | 0.07 | 0.13 | 0.13 | 3 |" in evaluate_cli.volume_errors_table({"sds": m})


def test_haze_is_the_corner_opacity_and_no_true_object_reaches_the_corners():
  opacity = np.zeros((2, 16, 16))
  opacity[0, :2, :2] = 1.0  # one full corner square of view 0 (16 / 8 = 2 pixels a side)
  opacity[1, -2:, -2:] = 0.5  # half of another in view 1
  opacity[:, 4:12, 4:12] = 1.0  # the object in the middle does not count
  assert evaluate_cli.corner_opacity(opacity) == pytest.approx((1.0 + 0.5) / 8)
  # The world's objects, in the views the benchmark scores with configs/shapes.py, leave the corners
  # empty: a perfect NeRF has no haze.
  from configs import shapes as shapes_config  # pylint: disable=g-import-not-at-top
  config = shapes_config.get_config()
  cams = r_precision.scoring_cameras(config, 8, int(config.render.resolution))
  for shape in captions.SHAPES:
    _, coverage = world.render_prompt(captions.caption(shape, "red"), cams, shading.ALBEDO)
    assert float(np.asarray(coverage).mean()) > 0.1, shape
    assert evaluate_cli.corner_opacity(coverage) == 0.0, shape


@pytest.mark.parametrize("retrieval, message", [
    ("a blue torus", "--retrieval_prompts must hold every prompt of --prompts; missing ['a red cube']"),
    ("a red cube,a red teapot", "--retrieval_prompts: prompt must read"),
])
def test_cli_refuses_bad_retrieval_prompts_before_any_work(tmp_path, retrieval, message):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / "eval"
  done = subprocess.run(
      [sys.executable, "-m", "dreamfusion_jax.evaluate", "--config", os.path.join(repo, "configs", "tiny.py"),
       "--workdir", str(workdir), "--prompts", "a red cube", "--retrieval_prompts", retrieval],
      cwd=repo, capture_output=True, text=True, check=False)
  assert done.returncode != 0 and message in done.stderr + done.stdout
  assert not workdir.exists(), "refused before the workdir was made"


def test_cli_refuses_a_stale_run_with_its_message_alone_and_leaves_it_untouched(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tmp_path / "eval"
  stale = tiny.get_config()
  stale.num_steps += 1
  folder = evaluate_cli.run_folder(str(workdir), "sds", "a red cube", 0)
  os.makedirs(folder)
  saved = workdir_lib.save_config(folder, evaluate_cli.run_config(stale, "sds", "a red cube", 0))
  before = open(saved).read()
  done = subprocess.run(
      [sys.executable, "-m", "dreamfusion_jax.evaluate", "--config", os.path.join(repo, "configs", "tiny.py"),
       "--workdir", str(workdir), "--prompts", "a red cube", "--methods", "sds", "--seeds", "0"],
      cwd=repo, capture_output=True, text=True, check=False)
  assert done.returncode == 1, done.stderr[-3000:]
  expected = f"num_steps: {stale.num_steps} (saved) -> {stale.num_steps - 1} (now)"
  assert "error: --workdir" in done.stderr and expected in done.stderr
  # The message alone: no traceback, no listing of the flags (absl's answer to a UsageError).
  assert "Traceback" not in done.stderr and "--workdir: Folder of all runs" not in done.stderr
  assert os.listdir(workdir) == ["sds"] and open(saved).read() == before


def test_an_earlier_benchmark_with_other_runs_is_set_aside_not_overwritten(tmp_path):
  jobs = evaluate_cli.benchmark_jobs(["sjc"], ["a red cube"], ["1"])
  retrieval = ["a red cube", "a blue torus"]

  def write(stem, views, jobs, retrieval, text):
    with open(tmp_path / (stem + ".json"), "w") as f:
      json.dump({"jobs": [list(j) for j in jobs], "retrieval": retrieval, "note": text}, f)
    (tmp_path / (stem + ".md")).write_text(text)
    (tmp_path / views).write_text(text)

  assert evaluate_cli.set_aside_other_results(str(tmp_path), (0, 1), jobs, retrieval) == []  # nothing yet
  write("results", "views.png", jobs, retrieval, "same")
  assert evaluate_cli.set_aside_other_results(str(tmp_path), (0, 1), jobs, retrieval) == []
  assert (tmp_path / "results.md").read_text() == "same", "the same benchmark again updates its files"
  for i, other in enumerate([(evaluate_cli.benchmark_jobs(["sds"], ["a red cube"], ["1"]), retrieval),
                             (jobs, retrieval[:1])], start=1):
    write("results", "views.png", *other, f"other {i}")
    moved = evaluate_cli.set_aside_other_results(str(tmp_path), (0, 1), jobs, retrieval)
    assert sorted(os.path.basename(m) for m in moved) == sorted(
        [f"results.earlier{i}.json", f"results.earlier{i}.md", f"views.earlier{i}.png"])
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "views.png").exists()
    assert (tmp_path / f"views.earlier{i}.png").read_text() == f"other {i}"
  assert (tmp_path / "results.earlier1.md").read_text() == "other 1", "an earlier set-aside file is kept too"
  # A shard's files are its own: results_0_of_2 does not touch the unsharded results.
  write("results", "views.png", [], retrieval, "unsharded")
  write("results_0_of_2", "views_0_of_2.png", [], retrieval, "shard")
  moved = evaluate_cli.set_aside_other_results(str(tmp_path), (0, 2), jobs, retrieval)
  assert [os.path.basename(m) for m in moved] == [
      "results_0_of_2.earlier1.json", "results_0_of_2.earlier1.md", "views_0_of_2.earlier1.png"]
  assert (tmp_path / "results.json").exists()
  # Views whose results were never written (a call stopped in between) are kept too, under a number
  # no earlier file of any kind holds.
  (tmp_path / "results.earlier3.md").write_text("stray")
  (tmp_path / "views_0_of_2.png").write_text("orphan")
  moved = evaluate_cli.set_aside_other_results(str(tmp_path), (0, 2), jobs, retrieval)
  assert [os.path.basename(m) for m in moved] == ["views_0_of_2.earlier2.png"]
  assert (tmp_path / "views_0_of_2.earlier1.png").read_text() == "shard"
  assert (tmp_path / "views_0_of_2.earlier2.png").read_text() == "orphan"
  (tmp_path / "views.png").write_text("orphan of the unsharded call")
  os.remove(tmp_path / "results.json")
  moved = evaluate_cli.set_aside_other_results(str(tmp_path), (0, 1), jobs, retrieval)
  assert [os.path.basename(m) for m in moved] == ["results.earlier4.md", "views.earlier4.png"]
  assert (tmp_path / "results.earlier3.md").read_text() == "stray", "number 3 was taken by the .md"
