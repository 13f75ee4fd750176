"""The pixel prior: what training computes equals what the project's loader computes, and the shipped
weights (when present) load as a 32x32 RGB pixel prior."""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers  # pylint: disable=g-bad-import-order

from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import prior_model
from dreamfusion_jax.shapes import sample
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib
from dreamfusion_jax.shapes import train_prior


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A tiny prior trained for zero steps, saved with save_diffusers and loaded back by load_prior."""
  root = tmp_path_factory.mktemp("prior")
  tok_dir = str(root / "tok")
  tok, spec, text, unet, params = helpers.tiny_prior(tok_dir)
  out = str(root / "weights")
  prior_model.save_diffusers(out, spec, params, tok_dir, {"step": 0}, dtype=jnp.float32)
  prior, loaded = stable_diffusion.load_prior(out, "float32", local_files_only=True)
  return dict(spec=spec, text=text, unet=unet, params=params, tok=tok, prior=prior, loaded=loaded, dir=out)


def test_saved_layout_is_a_pixel_prior(tiny):
  prior = tiny["prior"]
  assert prior.kind == "pixel" and prior.vae is None
  assert prior.channels == 3 and prior.sample_size == prior_model.RESOLUTION
  assert prior.prediction_type == "epsilon"
  np.testing.assert_allclose(prior.alphas_cumprod, prior_model.alphas_cumprod(), rtol=1e-6)
  assert sorted(os.listdir(tiny["dir"])) == ["scheduler", "text_encoder", "tokenizer", "training.json",
                                             "unet"]


def test_training_forward_equals_loader_forward(tiny):
  """The text encoding and noise prediction used in training are exactly what distillation will see."""
  prompts = ["a red cube, side view", ""]
  ids = jnp.asarray(tokenizer_lib.encode(tiny["tok"], prompts))
  context = prior_model.encode_text(tiny["text"], tiny["params"]["text"], ids)
  np.testing.assert_allclose(np.asarray(context),
                             np.asarray(tiny["prior"].encode_text(tiny["loaded"], prompts)), atol=1e-5)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  t = jnp.array([10, 900])
  ours = prior_model.predict_noise(tiny["unet"], tiny["params"]["unet"], x, t, context)
  theirs = tiny["prior"].predict_noise(tiny["loaded"], x, t, context)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)


def test_train_step_updates_ema_with_its_warmup_decay(tiny):
  from configs import base as base_config  # pylint: disable=g-import-not-at-top
  text, unet, params = tiny["text"], tiny["unet"], tiny["params"]
  optimizer = train_prior.make_optimizer(1e-3, 1)
  fresh = lambda: train_prior.TrainState(  # the step donates its state: each call gets its own
      step=jnp.zeros((), jnp.int32), params=jax.tree_util.tree_map(jnp.copy, params),
      ema=jax.tree_util.tree_map(jnp.copy, params), opt_state=optimizer.init(params))
  table = jnp.asarray(tokenizer_lib.encode(tiny["tok"], captions.caption_table()))
  step_fn = train_prior.make_train_step(text, unet, optimizer, base_config.get_config(), 8)
  before = jax.tree_util.tree_map(np.asarray, params)
  new, loss = step_fn(fresh(), jax.random.PRNGKey(0), table)
  assert int(new.step) == 1 and np.isfinite(float(loss))
  decay = 1.0 / 10.0  # (1 + step) / (10 + step) at step 0
  for e, p, b in zip(jax.tree_util.tree_leaves(new.ema), jax.tree_util.tree_leaves(new.params),
                     jax.tree_util.tree_leaves(before)):
    np.testing.assert_allclose(np.asarray(e), decay * b + (1 - decay) * np.asarray(p), atol=1e-6)
  # lr_scale scales the whole update (adam and weight decay alike): 0 leaves the params, 0.5 halves the step.
  still, _ = step_fn(fresh(), jax.random.PRNGKey(0), table, jnp.float32(0.0))
  half, _ = step_fn(fresh(), jax.random.PRNGKey(0), table, jnp.float32(0.5))
  for s, h, n, b in zip(jax.tree_util.tree_leaves(still.params), jax.tree_util.tree_leaves(half.params),
                        jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(before)):
    np.testing.assert_array_equal(np.asarray(s), b)
    np.testing.assert_allclose(np.asarray(h) - b, 0.5 * (np.asarray(n) - b), atol=1e-7)
  # A checkpoint round-trips the whole state.
  restored = flax.serialization.from_bytes(new, flax.serialization.to_bytes(new))
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(new)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_diffusion_loss_draws_ticks_below_max_timestep(tiny):
  """max_timestep=1 pins every tick to 0: the loss is then the Min-SNR-weighted MSE at t = 0 exactly."""
  images = jax.random.uniform(jax.random.PRNGKey(2), (4, 32, 32, 3))
  ids = jnp.asarray(tokenizer_lib.encode(tiny["tok"], ["a red cube"] * 2 + ["a blue torus", ""]))
  ac = jnp.asarray(prior_model.alphas_cumprod())
  key = jax.random.PRNGKey(3)
  loss = lambda m: float(train_prior.diffusion_loss(tiny["params"], tiny["text"], tiny["unet"], images,
                                                    ids, key, ac, m))
  noise = jax.random.normal(jax.random.split(key)[1], images.shape)
  t = jnp.zeros((4,), jnp.int32)
  x_t = jnp.sqrt(ac[0]) * (2.0 * images - 1.0) + jnp.sqrt(1.0 - ac[0]) * noise
  context = prior_model.encode_text(tiny["text"], tiny["params"]["text"], ids)
  eps = prior_model.predict_noise(tiny["unet"], tiny["params"]["unet"], x_t, t, context)
  snr = ac[0] / (1.0 - ac[0])
  expected = float(jnp.minimum(snr, train_prior.MIN_SNR_GAMMA) / snr * jnp.mean((eps - noise)**2))
  np.testing.assert_allclose(loss(1), expected, rtol=1e-5)
  assert abs(loss(prior_model.NUM_TRAIN_TIMESTEPS) - expected) > 1e-3 * expected  # other ticks drawn


def test_ddim_timesteps_descend_evenly_to_zero():
  ts = sample.ddim_timesteps(1000, 50)
  assert ts[0] == 980 and ts[-1] == 0 and len(set(ts.tolist())) == 50
  np.testing.assert_array_equal(np.diff(ts), -20)
  with pytest.raises(ValueError, match="num_steps"):
    sample.ddim_timesteps(1000, 0)


SHIPPED = train_prior.WEIGHTS_DIR


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHIPPED, "unet")),
                    reason="no shipped prior in dreamfusion_jax/shapes/weights yet (train_prior writes it)")
def test_shipped_prior_loads_and_describes_itself():
  prior, params = stable_diffusion.load_prior(SHIPPED, "float32", local_files_only=True)
  assert prior.kind == "pixel" and prior.channels == 3 and prior.sample_size == prior_model.RESOLUTION
  with open(os.path.join(SHIPPED, "training.json")) as f:
    info = json.load(f)
  assert info["step"] > 0 and info["resolution"] == prior.sample_size
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(SHIPPED) for f in fs)
  assert size <= 30 * 2**20
  prompts = captions.prompt_set()
  ids = prior.tokenize(prompts)
  for row, prompt in zip(ids, prompts):  # one known token per word (CLIP's unk is its EOS)
    words = prompt.split()
    assert prior.tokenizer.convert_ids_to_tokens(row[1:1 + len(words)].tolist()) == [w + "</w>" for w in words]
  emb = prior.encode_text(params, ["a red cube", "a blue cube"])
  assert emb.shape == (2, 77, prior.unet.cross_attention_dim) and np.all(np.isfinite(emb))


def test_token_embeddings_are_rescaled_and_nothing_else_changes(tiny):
  text_params = tiny["params"]["text"]
  emb = text_params["text_model"]["embeddings"]["token_embedding"]["embedding"]
  np.testing.assert_allclose(float(jnp.std(emb)), prior_model.TOKEN_EMBEDDING_STD, rtol=1e-4)
  scaled = prior_model.scale_token_embeddings(text_params, 2.0)
  new = scaled["text_model"]["embeddings"]["token_embedding"]["embedding"]
  np.testing.assert_allclose(np.asarray(new), np.asarray(emb) * 2.0 / float(jnp.std(emb)), rtol=1e-5)
  same = lambda tree: [x for p, x in jax.tree_util.tree_leaves_with_path(tree)
                       if "token_embedding" not in jax.tree_util.keystr(p)]
  for a, b in zip(same(scaled), same(text_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cooldown_schedule_joins_the_constant_rate_and_resumes_with_the_same_state():
  lr, warmup, start, total = 1e-3, 10, 100, 300
  plain = train_prior.learning_rate(lr, warmup)
  cooled = train_prior.learning_rate(lr, warmup, start, total)
  for step in (0, 5, 10, 50, 100):  # warm-up and the constant phase are untouched
    np.testing.assert_allclose(float(cooled(step)), float(plain(step)), rtol=1e-6)
  # Cosine from lr at `start` to COOLDOWN_FLOOR * lr at `total`: halfway it is the mean of the two.
  floor = train_prior.COOLDOWN_FLOOR * lr
  np.testing.assert_allclose(float(cooled((start + total) // 2)), (lr + floor) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(cooled(total)), floor, rtol=1e-5)
  assert float(cooled(start + 10)) < lr
  # A checkpoint of a constant-rate run restores into the cooled-down optimizer: same state structure.
  params = {"w": jnp.ones((3,))}
  before = jax.tree_util.tree_structure(train_prior.make_optimizer(lr, warmup).init(params))
  after = jax.tree_util.tree_structure(train_prior.make_optimizer(lr, warmup, start, total).init(params))
  assert before == after
  with pytest.raises(ValueError, match="--cooldown-from"):
    train_prior.learning_rate(lr, warmup, 300, 300)


def test_clock_cooldown_is_the_step_cooldown_by_wall_clock():
  floor = train_prior.COOLDOWN_FLOOR
  scale = lambda t: train_prior.clock_cooldown_scale(t, 240.0, 60.0)
  assert scale(0.0) == 1.0 and scale(180.0) == 1.0  # constant until the last minute
  np.testing.assert_allclose(scale(210.0), (1.0 + floor) / 2, rtol=1e-12)  # halfway: the mean
  assert scale(240.0) == pytest.approx(floor) and scale(1e4) == pytest.approx(floor)
  assert 1.0 > scale(190.0) > scale(200.0) > scale(230.0) > floor
  # The same curve as learning_rate's step cooldown, with seconds for steps.
  steps = train_prior.learning_rate(1.0, 1, 180, 240)
  for t in (185, 200, 225, 240):
    np.testing.assert_allclose(scale(float(t)), float(steps(t)), rtol=1e-5)
  for bad in (0.0, 300.0):
    with pytest.raises(ValueError, match="--cooldown-minutes"):
      train_prior.clock_cooldown_scale(10.0, 240.0, bad)


def test_camera_choice_is_recorded_with_the_step_a_fine_tune_switched_at():
  from configs import base as base_config  # pylint: disable=g-import-not-at-top
  from configs import shapes as shapes_config  # pylint: disable=g-import-not-at-top
  world_cameras = train_prior.CAMERA_CONFIGS["shapes"]().camera
  nerf_cameras = shapes_config.get_config().camera
  assert tuple(world_cameras.distance_range) == tuple(nerf_cameras.distance_range)
  # The world renders at the focal range the prior has always seen (base.py's); only the NeRF zooms in.
  assert tuple(world_cameras.focal_range) == tuple(base_config.get_config().camera.focal_range)
  zoomed = np.multiply(world_cameras.focal_range, shapes_config.NERF_ZOOM)
  assert np.allclose(nerf_cameras.focal_range, zoomed)
  fresh = train_prior.record_cameras({"step": 0}, "shapes", 0)
  assert fresh["camera_phases"] == [{"from_step": 0, "cameras": "shapes"}]
  assert train_prior.describe_cameras(fresh) == "cameras from configs/shapes.py"
  back = train_prior.record_cameras(fresh, "base", 500)  # a fresh shapes run later switched to base
  assert train_prior.describe_cameras(back) == (
      "cameras from configs/shapes.py, from step 500 configs/base.py's")
  old = {"step": 11180}  # saved before the choice existed: trained on base.py's cameras
  assert train_prior.record_cameras(old, "base", 11180)["camera_phases"] == []
  tuned = train_prior.record_cameras(old, "shapes", 11180)
  assert tuned["camera_phases"] == [{"from_step": 11180, "cameras": "shapes"}] and "camera_phases" not in old
  again = train_prior.record_cameras(tuned, "shapes", 12000)  # resuming the fine-tune adds nothing
  assert again["camera_phases"] == tuned["camera_phases"]
  assert train_prior.describe_cameras(again) == (
      "cameras from configs/base.py, from step 11180 configs/shapes.py's")
  with pytest.raises(ValueError, match="cameras must be one of"):
    train_prior.record_cameras(old, "wide", 0)


def test_timestep_range_is_recorded_with_the_step_it_changed_at():
  full = prior_model.NUM_TRAIN_TIMESTEPS
  assert "timestep_phases" not in train_prior.record_max_timestep({"step": 0}, full, 0)
  tuned = train_prior.record_max_timestep({"step": 0}, 650, 0)
  assert tuned["timestep_phases"] == [{"from_step": 0, "max_timestep": 650}]
  assert train_prior.record_max_timestep(tuned, 650, 900) == tuned  # resumed with the same range
  back = train_prior.record_max_timestep(tuned, full, 900)  # resumed on all the ticks: both phases kept
  assert back["timestep_phases"] == [{"from_step": 0, "max_timestep": 650},
                                     {"from_step": 900, "max_timestep": full}]
  late = train_prior.record_max_timestep({"step": 4000}, 650, 4000)  # a run that narrowed it later
  assert late["timestep_phases"] == [{"from_step": 4000, "max_timestep": 650}]


def test_warm_start_from_weights_restores_the_saved_params_tokenizer_and_lineage(tiny, tmp_path):
  """--init-from-weights: training continues from exactly the exported weights, with their tokenizer."""
  spec_overrides = dict(channels=tiny["spec"].channels, text_width=tiny["spec"].text_width,
                        text_layers=tiny["spec"].text_layers)
  earlier = {"step": 7, "loss": 0.5, "warm_start": {"step": 3}, "dtype": "float32",
             "spec": json.loads(json.dumps(spec_overrides)), "params": {"unet": 1}}
  weights = str(tmp_path / "weights")
  prior_model.save_diffusers(weights, tiny["spec"], tiny["params"], os.path.join(tiny["dir"], "tokenizer"),
                             earlier, dtype=jnp.float32)
  workdir = str(tmp_path / "run")
  params, record = train_prior.warm_start_from_weights(weights, workdir, spec_overrides)
  assert sorted(params) == ["text", "unet"]
  want, got = jax.tree_util.tree_leaves_with_path(tiny["params"]), jax.tree_util.tree_leaves_with_path(params)
  assert [jax.tree_util.keystr(p) for p, _ in want] == [jax.tree_util.keystr(p) for p, _ in got]
  for (_, a), (_, b) in zip(want, got):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The tokenizer the weights were trained with, which setup() then keeps.
  assert tokenizer_lib.load_tokenizer(os.path.join(workdir, "tokenizer")).get_vocab() == tiny["tok"].get_vocab()
  assert record == {"step": 7, "loss": 0.5, "warm_start": {"step": 3}, "weights": weights}
  with pytest.raises(ValueError, match="spec"):
    train_prior.warm_start_from_weights(weights, workdir, dict(spec_overrides, text_layers=3))
  with pytest.raises(FileNotFoundError, match="training.json"):
    train_prior.warm_start_from_weights(str(tmp_path), workdir, spec_overrides)


def test_diffusion_classifier_errors_are_the_per_caption_denoising_loss(tiny):
  """caption_errors equals the noise-prediction error computed one (image, caption, draw) at a time."""
  from dreamfusion_jax.prior import schedule  # pylint: disable=g-import-not-at-top
  from dreamfusion_jax.shapes import diffusion_classifier  # pylint: disable=g-import-not-at-top
  prior, params = tiny["prior"], tiny["loaded"]
  texts = [["a red cube", "a red sphere", ""], ["a cone", "a torus", "a blue table"]]
  emb = prior.encode_text(params, sum(texts, [])).reshape((2, 3) + (77, -1))
  x0 = jax.random.uniform(jax.random.PRNGKey(2), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
  t = jnp.asarray([100, 700])
  eps = jax.random.normal(jax.random.PRNGKey(3), (2,) + x0.shape)
  got = np.asarray(diffusion_classifier.caption_errors(prior, params, x0, emb, t, eps))
  want = np.zeros((2, 3))
  for i in range(2):
    for k in range(3):
      for m in range(2):
        ab = schedule.gather(prior.alphas_cumprod, t[m:m + 1])
        x_t = schedule.add_noise(x0[i:i + 1], eps[m, i:i + 1], ab)
        pred = prior.predict_noise(params, x_t, t[m:m + 1], emb[i, k][None])
        want[i, k] += float(jnp.mean((pred - eps[m, i:i + 1])**2)) / 2
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_diffusion_classifier_summary_counts_argmins_per_shape():
  from dreamfusion_jax.shapes import diffusion_classifier  # pylint: disable=g-import-not-at-top
  errors = np.full((3, len(captions.SHAPES)), 2.0)
  errors[0, 0] = 1.0  # a sphere, classified right with the runner-up at 2x: margin 100%
  errors[1, 1] = 1.6  # a cube, right, margin 25%
  errors[2, 0] = 1.0  # a cube, called a sphere
  result = diffusion_classifier.summarize(errors, np.array([0, 1, 1]))
  assert result["accuracy"] == pytest.approx(2 / 3)
  assert result["per_shape"] == {"sphere": 1.0, "cube": 0.5}
  assert result["margin"] == pytest.approx((1.0 + 0.25) / 2)
  assert diffusion_classifier.shape_captions(0, 2) == [f"a {s}" for s in captions.SHAPES]  # textureless
  assert diffusion_classifier.shape_captions(1, 0)[1] == captions.caption("cube", captions.COLOUR_NAMES[1])


def test_training_json_says_how_the_shapes_shared_the_batches():
  assert train_prior.describe_shapes({}) == ""  # runs saved before the choice: evenly
  assert train_prior.describe_shapes({"shape_weights": [2] * 8}) == ""
  text = train_prior.describe_shapes({"shape_weights": [1, 1, 1, 1, 2, 2, 2, 2]})
  assert text == "; shares of each batch sphere 1, cube 1, cylinder 1, cone 1, torus 2, snowman 2, mushroom 2, table 2"


@pytest.mark.parametrize("argv, flag", [(["--max-timestep", "0"], "--max-timestep"),
                                        (["--max-timestep", "1001"], "--max-timestep"),
                                        (["--batch", "20", "--shape-weights", "1", "1", "1", "1", "2", "2", "2",
                                          "2"], "--shape-weights")])
def test_bad_flags_are_refused_before_any_work(argv, flag, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr("sys.argv", ["train_prior", "--workdir", str(tmp_path / "run")] + argv)
  with pytest.raises(SystemExit):
    train_prior.main()
  assert flag in capsys.readouterr().err and not os.path.exists(tmp_path / "run")


def test_the_export_goes_to_the_workdir_unless_out_says_otherwise(tmp_path, monkeypatch):
  # A run without --out once exported over the shipped prior; the default is now WORKDIR/export.
  calls = []
  monkeypatch.setattr(train_prior, "train", lambda args: None)
  monkeypatch.setattr(train_prior, "export", lambda workdir, out: calls.append((workdir, out)))
  run = str(tmp_path / "run")
  for extra, want in (([], os.path.join(run, "export")), (["--out", str(tmp_path / "x")], str(tmp_path / "x"))):
    monkeypatch.setattr("sys.argv", ["train_prior", "--workdir", run, "--steps", "1"] + extra)
    train_prior.main()
    assert calls.pop() == (run, want)
  assert os.path.abspath(os.path.join(run, "export")) != os.path.abspath(SHIPPED)
