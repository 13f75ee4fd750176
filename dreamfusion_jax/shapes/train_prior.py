r"""Trains the shipped pixel prior on fresh renders of the embedded world, then exports it.

  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/shapes_prior_run --steps 6000 --batch 32
  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/shapes_prior_run --steps 6000 --resume
  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/shapes_prior_run --export-only
  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/shapes_prior_run --steps 8000 --resume \
      --cameras shapes --cooldown-from 7000   # fine-tune on the shapes main job's cameras
  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/more --init-from-weights \
      dreamfusion_jax/shapes/weights --steps 6000 --cameras shapes   # continue the shipped prior
  python -m dreamfusion_jax.shapes.train_prior --workdir /tmp/gpu --init-from-weights \
      dreamfusion_jax/shapes/weights --steps 1000000 --max-minutes 4 --cooldown-minutes 1 \
      --cameras shapes   # time-boxed: as many steps as 4 minutes allow, cooled down over the last one

Every step renders a new batch (world.sample_batch, inside the jitted step), captions it, drops 10% of
captions to "" for classifier-free guidance, and takes an AdamW step on the DDPM epsilon loss of the
text encoder and UNet together. An EMA of the parameters is kept and is what gets exported, in float16,
to the diffusers layout under WORKDIR/export (--out elsewhere; `--out dreamfusion_jax/shapes/weights`,
given explicitly, replaces the shipped prior). Checkpoints (the whole train state, as
msgpack) are written every few minutes; --resume continues from the latest. The shipped folder holds
only the exported EMA weights, not that train state: --init-from-weights continues training from them
(fresh optimizer and EMA, the same tokenizer).
"""

import argparse
import json
import math
import os
import platform
import shutil
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from configs import base as base_config
from configs import shapes as shapes_config
from dreamfusion_jax.prior import stable_diffusion
from dreamfusion_jax.shapes import captions
from dreamfusion_jax.shapes import prior_model
from dreamfusion_jax.shapes import tokenizer as tokenizer_lib
from dreamfusion_jax.shapes import world

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MIN_SNR_GAMMA = 5.0  # Min-SNR loss weighting (Hang et al. 2023): faster convergence, same optimum
EMA_DECAY = 0.998  # an averaging window of ~500 steps, short enough for runs of a few thousand


def shapes_world_config():
  """configs/shapes.py's cameras as the world renders them: its distances, base.py's focal range.

  The shapes main job's NeRF views zoom in by shapes_config.NERF_ZOOM on base.py's focal range (see
  configs/shapes.py); the world, and so the prior, keeps base.py's.
  """
  config = shapes_config.get_config()
  config.camera.focal_range = base_config.get_config().camera.focal_range
  return config


# Where the world's cameras come from: base.py's distribution (distance 1.0-1.5) or the shapes main job's
# (configs/shapes.py: distance 1.2-1.5, so no shape is cropped by a near camera).
CAMERA_CONFIGS = {"base": base_config.get_config, "shapes": shapes_world_config}


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar
  params: Any  # {'text': ..., 'unet': ...}
  ema: Any  # exponential moving average of params (the exported model)
  opt_state: Any


COOLDOWN_FLOOR = 0.1  # the cooldown ends at this fraction of the peak learning rate


def learning_rate(lr: float, warmup: int, cooldown_from: int = 0, total: int = 0) -> optax.Schedule:
  """Linear warm-up to `lr`, constant, then (if cooldown_from > 0) a cosine to COOLDOWN_FLOOR * lr at `total`.

  The cooldown is how a long constant-rate run ends: the shipped prior trained at a constant rate for
  most of its steps and cooled down over the last ones. The schedule's only state is the optimizer's
  step count, so a run resumed with a cooldown added restores the same optimizer state.
  """
  rise = optax.linear_schedule(0.0, lr, warmup)
  if cooldown_from <= 0:
    return rise
  if total <= cooldown_from:
    raise ValueError(f"--steps ({total}) must exceed --cooldown-from ({cooldown_from})")
  fall = optax.cosine_decay_schedule(lr, total - cooldown_from, alpha=COOLDOWN_FLOOR)
  return optax.join_schedules([rise, fall], [cooldown_from])


def make_optimizer(lr: float, warmup: int, cooldown_from: int = 0,
                   total: int = 0) -> optax.GradientTransformation:
  schedule = learning_rate(lr, warmup, cooldown_from, total)
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


def clock_cooldown_scale(elapsed_s: float, max_s: float, cooldown_s: float) -> float:
  """The learning rate's multiplier for a run that cools down over its last `cooldown_s` of `max_s` seconds.

  1 until max_s - cooldown_s, then the cosine of learning_rate's cooldown, by wall clock instead of
  steps: COOLDOWN_FLOOR at max_s (and after). A time-boxed run on hardware whose speed is not known in
  advance (a first run on a GPU) still ends cooled down, wherever its step count lands.
  """
  if not 0 < cooldown_s <= max_s:
    raise ValueError(f"--cooldown-minutes must be in (0, --max-minutes]; got {cooldown_s / 60:g} of "
                     f"{max_s / 60:g} minutes")
  progress = min(max((elapsed_s - (max_s - cooldown_s)) / cooldown_s, 0.0), 1.0)
  return COOLDOWN_FLOOR + (1.0 - COOLDOWN_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def diffusion_loss(params, text, unet, images, ids, key, alphas_cumprod,
                   max_timestep: int = prior_model.NUM_TRAIN_TIMESTEPS, camera=None):
  """Min-SNR-weighted epsilon MSE at t uniform in [0, max_timestep); images [B, H, W, 3] in [0, 1].

  A max_timestep under NUM_TRAIN_TIMESTEPS spends a fine-tune on the ticks distillation queries
  (configs/shapes.py's SDS settles at t <= 0.6, tick 600) instead of the near-pure-noise end. camera
  [B, 4]: the views' nerf.camera.conditioning, for a camera-conditioned UNet (also under the dropped
  caption: guidance is over the text only).
  """
  t_key, noise_key = jax.random.split(key)
  b = images.shape[0]
  t = jax.random.randint(t_key, (b,), 0, max_timestep)
  noise = jax.random.normal(noise_key, images.shape)
  ab = alphas_cumprod[t][:, None, None, None]
  x_t = jnp.sqrt(ab) * (2.0 * images - 1.0) + jnp.sqrt(1.0 - ab) * noise
  context = prior_model.encode_text(text, params["text"], ids)
  eps = prior_model.predict_noise(unet, params["unet"], x_t, t, context, camera)
  snr = alphas_cumprod[t] / (1.0 - alphas_cumprod[t])
  weight = jnp.minimum(snr, MIN_SNR_GAMMA) / snr
  return jnp.mean(weight * jnp.mean((eps - noise)**2, axis=(1, 2, 3)))


def make_train_step(text, unet, optimizer, config, batch_size: int, shape_weights=None,
                    max_timestep: int = prior_model.NUM_TRAIN_TIMESTEPS, camera_lr_scale: float = 1.0):
  """The jitted step: render a batch (world.sample_batch's shape_weights), one optimizer update, EMA update.

  `lr_scale` multiplies the optimizer's scheduled learning rate (clock_cooldown_scale's cooldown);
  `camera_lr_scale` multiplies it further for the camera input's own layers (unet/add_embedding, and the
  camera maps' slice of unet/conv_in), which a fine-tune adds at zero to a network that has already
  learned.
  """
  alphas_cumprod = jnp.asarray(prior_model.alphas_cumprod())

  def step_fn(state: TrainState, root_key: jax.Array, token_table: jax.Array, lr_scale=1.0):
    key = jax.random.fold_in(root_key, state.step)
    data_key, loss_key = jax.random.split(key)
    batch = world.sample_batch(data_key, batch_size, config, prior_model.RESOLUTION,
                               shape_weights=shape_weights)
    ids = token_table[batch.captions]
    camera = batch.camera if stable_diffusion.is_camera_conditioned(unet) else None
    loss, grads = jax.value_and_grad(diffusion_loss)(
        state.params, text, unet, batch.images, ids, loss_key, alphas_cumprod, max_timestep, camera)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    # adamw's update is -lr (adam + weight decay * params): scaling it scales the learning rate.
    updates = jax.tree_util.tree_map(lambda u: lr_scale * u, updates)
    updates = dict(updates, unet=scale_camera_updates(updates["unet"], camera_lr_scale))
    params = optax.apply_updates(state.params, updates)
    # EMA warm-up: early on the average follows the weights closely, then settles at EMA_DECAY.
    decay = jnp.minimum(EMA_DECAY, (1.0 + state.step) / (10.0 + state.step))
    ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
    return TrainState(step=state.step + 1, params=params, ema=ema, opt_state=opt_state), loss

  return jax.jit(step_fn, donate_argnums=0)


def scale_camera_updates(unet_updates, scale: float):
  """UNet updates with the camera input's own parameters scaled by `scale`: the camera vector's
  embedding (add_embedding) and the camera maps' input channels of conv_in (those after the image's 3)."""
  out = dict(unet_updates)
  if "add_embedding" in out:
    out["add_embedding"] = jax.tree_util.tree_map(lambda u: scale * u, out["add_embedding"])
  kernel = out["conv_in"]["kernel"]
  if kernel.shape[2] > 3:
    out["conv_in"] = dict(out["conv_in"], kernel=kernel.at[:, :, 3:, :].multiply(scale))
  return out


def on_one_device(state: TrainState) -> TrainState:
  """`state` with every leaf committed to the first device.

  A state whose leaves mix committed and uncommitted arrays makes the jitted step compile a second time
  on its second call (its outputs are all committed): 25 s on the 2-core CPU from --init-from-weights
  while diffusers' loader committed the weights beside the fresh step counter and Adam's counts. Since
  load_prior returns uncommitted weights (prior.checkpoint.on_default_device) that mix no longer comes
  from the loader; this keeps the state uniform whatever its leaves' origin (a resumed checkpoint, a
  warm start, fresh counters), on the first local device.
  """
  return jax.device_put(state, jax.local_devices()[0])


def _paths(workdir: str) -> dict[str, str]:
  return {"checkpoint": os.path.join(workdir, "checkpoint.msgpack"),
          "meta": os.path.join(workdir, "meta.json"), "tokenizer": os.path.join(workdir, "tokenizer")}


def save_checkpoint(workdir: str, state: TrainState, meta: dict) -> None:
  """Writes state and meta atomically (a crash mid-write leaves the previous checkpoint intact)."""
  paths = _paths(workdir)
  for name, data in (("checkpoint", flax.serialization.to_bytes(state)),
                     ("meta", json.dumps(meta, indent=2).encode())):
    with open(paths[name] + ".tmp", "wb") as f:
      f.write(data)
    os.replace(paths[name] + ".tmp", paths[name])


def hardware() -> str:
  device = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{device.platform}:{device.device_kind}; cpu {cpu} x{os.cpu_count()}"


def setup(workdir: str, spec_overrides: dict):
  """Tokenizer (learned once per workdir), spec, modules and the caption token table."""
  paths = _paths(workdir)
  os.makedirs(workdir, exist_ok=True)
  if not os.path.exists(os.path.join(paths["tokenizer"], "vocab.json")):
    tokenizer_lib.save_tokenizer(paths["tokenizer"], captions.caption_table())
  tok = tokenizer_lib.load_tokenizer(paths["tokenizer"])
  spec = prior_model.PriorSpec(vocab_size=len(tok), **spec_overrides)
  text, unet = prior_model.build(spec)
  token_table = jnp.asarray(tokenizer_lib.encode(tok, captions.caption_table()))
  return spec, text, unet, token_table


def export(workdir: str, out_dir: str, dtype=jnp.float16) -> None:
  """Writes the EMA weights of the latest checkpoint in the diffusers layout to `out_dir`."""
  paths = _paths(workdir)
  if not os.path.exists(paths["checkpoint"]):
    raise FileNotFoundError(f"no checkpoint in {workdir}; train first")
  with open(paths["meta"]) as f:
    meta = json.load(f)
  spec, text, unet, _ = setup(workdir, meta["spec"])
  raw = flax.serialization.msgpack_restore(open(paths["checkpoint"], "rb").read())
  info = dict(
      meta, images="rgb scaled to [-1, 1] (x = 2 rgb - 1)", resolution=prior_model.RESOLUTION,
      params={"text_encoder": prior_model.num_params(raw["ema"]["text"]),
              "unet": prior_model.num_params(raw["ema"]["unet"])},
      dtype=jnp.dtype(dtype).name, weights="EMA of the parameters, decay %g" % EMA_DECAY,
      loss_kind="epsilon MSE with Min-SNR-%g weighting, t ~ U{0..999}" % MIN_SNR_GAMMA,
      data=("fresh sphere-traced renders of dreamfusion_jax.shapes.world every step; shading modes "
            "albedo/lambertian/textureless with p = %s; %s%s" % (world.MODE_PROBS, describe_cameras(meta),
                                                                describe_shapes(meta))),
      captions=("'a {colour} {shape}' (+ ', {view} view' with p 0.6); textureless renders and 10% "
                "of coloured ones without the colour; 10% empty prompts for classifier-free guidance"))
  prior_model.save_diffusers(out_dir, spec, raw["ema"], paths["tokenizer"], info, dtype)
  print(f"exported step {meta['step']} to {out_dir}")


def warm_start(workdir: str):
  """Params of another run's latest checkpoint, token embeddings rescaled to TOKEN_EMBEDDING_STD.

  The shipped model was trained in two phases: a first run with CLIP's small token embeddings learned
  an almost unconditional UNet; the second starts from it with rescaled token embeddings, a fresh
  optimizer and a fresh EMA, so the UNet keeps its denoising skill and learns to use the prompt.
  """
  raw = flax.serialization.msgpack_restore(open(_paths(workdir)["checkpoint"], "rb").read())
  params = jax.tree_util.tree_map(jnp.asarray, raw["params"])
  return {"text": prior_model.scale_token_embeddings(params["text"]), "unet": params["unet"]}


def warm_start_from_weights(weights_dir: str, workdir: str, spec_overrides: dict):
  """float32 params of an exported prior (the diffusers layout train_prior writes) and its lineage.

  Copies its tokenizer into `workdir` first, so the token ids the weights were trained with stay
  valid; the weights' training.json must name the spec this run was asked for. Returns (params,
  record): record is the weights' `lineage`, to be kept as meta["warm_start"] (it nests the record of
  any earlier warm start).
  """
  info_path = os.path.join(weights_dir, "training.json")
  if not os.path.exists(info_path):
    raise FileNotFoundError(f"--init-from-weights: {info_path} is missing; the folder must be one "
                            "train_prior exported (e.g. dreamfusion_jax/shapes/weights)")
  with open(info_path) as f:
    info = json.load(f)
  theirs, ours = dict(info.get("spec") or {}), json.loads(json.dumps(spec_overrides))  # tuples as lists
  add_camera = ours.get("camera_dim", 0) and not theirs.get("camera_dim", 0)
  if add_camera:  # a text-only prior continued with a camera input (prior_model.add_camera_input)
    theirs["camera_dim"] = ours["camera_dim"]
  add_maps = ours.get("camera_maps", False) and not theirs.get("camera_maps", False)
  if add_maps:  # a prior continued with camera maps (prior_model.add_camera_maps)
    theirs["camera_maps"] = True
  if {k: v for k, v in theirs.items() if v} != {k: v for k, v in ours.items() if v}:
    raise ValueError(f"--init-from-weights: the weights' spec {info.get('spec')} differs from this "
                     f"run's {spec_overrides}; pass the weights' --channels/--text-width/--text-layers"
                     "/--camera-dim/--camera-maps")
  target = _paths(workdir)["tokenizer"]
  os.makedirs(target, exist_ok=True)
  source = os.path.join(weights_dir, "tokenizer")
  for name in os.listdir(source):
    shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
  _, loaded = stable_diffusion.load_prior(weights_dir, "float32", local_files_only=True,
                                          require_vae=False)
  params = {"text": flax.core.unfreeze(loaded["text_encoder"]),
            "unet": flax.core.unfreeze(loaded["unet"])}
  if add_camera:
    spec = prior_model.PriorSpec(**spec_overrides)
    params["unet"] = prior_model.add_camera_input(jax.random.PRNGKey(0), spec, params["unet"])
  if add_maps:
    params["unet"] = prior_model.add_camera_maps(params["unet"])
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params), lineage(info, weights_dir)


# What a warm start keeps of the weights' training.json: how they were trained, not how they were saved.
LINEAGE_FIELDS = ("step", "wall_seconds", "loss", "batch", "lr", "seed", "hardware", "camera_phases",
                  "cooldown", "shape_weights", "timestep_phases", "camera_lr_phases", "warm_start",
                  "average")


def lineage(info: dict, weights_dir: str) -> dict:
  """The LINEAGE_FIELDS of an export's training.json `info`, plus the folder it was read from."""
  return dict({k: v for k, v in info.items() if k in LINEAGE_FIELDS}, weights=weights_dir)


def record_cameras(meta: dict, cameras: str, step: int) -> dict:
  """meta with `cameras` (a CAMERA_CONFIGS name) as the camera distribution from `step` on.

  meta["camera_phases"] lists {from_step, cameras} each time the distribution changes (a fresh run
  starts one at step 0; a fine-tune resumed on other cameras appends one), so the exported
  training.json says which steps saw which cameras; the current distribution is the last phase's.
  Runs saved before the choice existed have no phases and trained on base.py's.
  """
  if cameras not in CAMERA_CONFIGS:
    raise ValueError(f"cameras must be one of {sorted(CAMERA_CONFIGS)}, got {cameras!r}")
  phases = list(meta.get("camera_phases", []))
  current = phases[-1]["cameras"] if phases else "base"
  if step == 0:
    phases = [{"from_step": 0, "cameras": cameras}]
  elif cameras != current:
    phases.append({"from_step": step, "cameras": cameras})
  return dict(meta, camera_phases=phases)


def record_max_timestep(meta: dict, max_timestep: int, step: int) -> dict:
  """meta with the training ticks drawn from [0, max_timestep) from `step` on.

  meta["timestep_phases"] lists {from_step, max_timestep} each time the range changes, as
  record_cameras does for cameras; no phases means every step drew from all the ticks.
  """
  phases = [] if step == 0 else list(meta.get("timestep_phases", []))
  current = phases[-1]["max_timestep"] if phases else prior_model.NUM_TRAIN_TIMESTEPS
  if max_timestep != current:
    phases.append({"from_step": step, "max_timestep": max_timestep})
  meta = {k: v for k, v in meta.items() if k != "timestep_phases"}
  return dict(meta, timestep_phases=phases) if phases else meta


def record_camera_lr_scale(meta: dict, scale: float, step: int) -> dict:
  """meta with the camera layers' learning-rate multiple (--camera-lr-scale) from `step` on, as
  record_max_timestep records the ticks: meta["camera_lr_phases"] lists {from_step, camera_lr_scale}
  each time it changes; no phases means 1 throughout."""
  phases = [] if step == 0 else list(meta.get("camera_lr_phases", []))
  current = phases[-1]["camera_lr_scale"] if phases else 1.0
  if scale != current:
    phases.append({"from_step": step, "camera_lr_scale": scale})
  meta = {k: v for k, v in meta.items() if k != "camera_lr_phases"}
  return dict(meta, camera_lr_phases=phases) if phases else meta


def describe_cameras(meta: dict) -> str:
  """Which camera distribution the renders came from, phase by phase, for training.json."""
  phases = list(meta.get("camera_phases", []))
  if not phases or phases[0]["from_step"] > 0:  # steps before phases were recorded used base.py's
    phases.insert(0, {"from_step": 0, "cameras": "base"})
  text = f"cameras from configs/{phases[0]['cameras']}.py"
  for phase in phases[1:]:
    text += f", from step {phase['from_step']} configs/{phase['cameras']}.py's"
  return text


def describe_shapes(meta: dict) -> str:
  """How the shapes shared each batch, for training.json ("" when evenly, as before the choice existed)."""
  weights = list(meta.get("shape_weights", [1] * len(captions.SHAPES)))
  if len(set(weights)) <= 1:
    return ""
  return "; shares of each batch " + ", ".join(f"{s} {w}" for s, w in zip(captions.SHAPES, weights))


def train(args) -> None:
  spec_overrides = dict(channels=tuple(args.channels), text_width=args.text_width,
                        text_layers=args.text_layers)
  if args.camera_dim:  # absent, not 0, for a text-only prior: its training.json stays as it was
    spec_overrides["camera_dim"] = args.camera_dim
  if args.camera_maps:  # likewise absent unless asked for
    spec_overrides["camera_maps"] = True
  shape_weights = tuple(args.shape_weights)
  paths = _paths(args.workdir)
  warm = None
  if args.init_from_weights and not (args.resume and os.path.exists(paths["checkpoint"])):
    # Before setup(), which keeps the tokenizer it finds in the workdir: the weights' own.
    warm = warm_start_from_weights(args.init_from_weights, args.workdir, spec_overrides)
  spec, text, unet, token_table = setup(args.workdir, spec_overrides)
  config = CAMERA_CONFIGS[args.cameras]()
  optimizer = make_optimizer(args.lr, args.warmup, args.cooldown_from, args.steps)
  meta = {"step": 0, "wall_seconds": 0.0, "loss": None}
  if warm is not None:
    params, meta["warm_start"] = warm
  else:
    params = prior_model.init_params(jax.random.PRNGKey(args.seed), spec, text, unet)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     ema=jax.tree_util.tree_map(jnp.copy, params), opt_state=optimizer.init(params))
  if args.init_from:
    params = warm_start(args.init_from)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       ema=jax.tree_util.tree_map(jnp.copy, params), opt_state=optimizer.init(params))
    with open(_paths(args.init_from)["meta"]) as f:
      earlier = json.load(f)
    meta["warm_start"] = {k: earlier[k] for k in ("step", "wall_seconds", "loss", "batch", "lr")}
  if args.resume and os.path.exists(paths["checkpoint"]):
    state = flax.serialization.from_bytes(state, open(paths["checkpoint"], "rb").read())
    with open(paths["meta"]) as f:
      meta = json.load(f)
    print(f"resumed from step {int(state.step)}")
  state = on_one_device(state)
  meta.update(spec=spec_overrides, batch=args.batch, seed=args.seed, lr=args.lr, hardware=hardware(),
              target_steps=args.steps, shape_weights=list(shape_weights))
  meta = record_camera_lr_scale(meta, args.camera_lr_scale, int(state.step))
  meta = record_max_timestep(meta, args.max_timestep, int(state.step))
  meta = record_cameras(meta, args.cameras, int(state.step))
  meta.pop("cooldown", None)  # a resumed run records this session's schedule, not an earlier one's
  if args.cooldown_from:
    meta["cooldown"] = {"from_step": args.cooldown_from, "to_step": args.steps, "kind": "cosine",
                        "final_lr": COOLDOWN_FLOOR * args.lr}
  if args.cooldown_minutes:
    meta["cooldown"] = {"last_minutes": args.cooldown_minutes, "of_minutes": args.max_minutes,
                        "kind": "cosine by wall clock", "final_lr": COOLDOWN_FLOOR * args.lr}
  step_fn = make_train_step(text, unet, optimizer, config, args.batch, shape_weights, args.max_timestep,
                            args.camera_lr_scale)
  root_key = jax.random.PRNGKey(args.seed + 1)
  print(f"text encoder {prior_model.num_params(params['text']):,} params, "
        f"unet {prior_model.num_params(params['unet']):,} params", flush=True)
  session_start = last_save = time.time()
  start, losses = session_start - meta["wall_seconds"], []
  # A run the clock ends (--cooldown-minutes) shows steps and steps/s: --steps is only a cap there, and
  # an ETA towards it would mislead.
  bar = tqdm.tqdm(range(int(state.step), args.steps), initial=int(state.step),
                  total=None if args.cooldown_minutes else args.steps, mininterval=10.0, smoothing=0.05)
  pending = []  # this step's losses, still on the device: read every 50 steps, not one sync per step
  for step in bar:
    scale = 1.0
    if args.cooldown_minutes:
      scale = clock_cooldown_scale(time.time() - session_start, 60 * args.max_minutes,
                                   60 * args.cooldown_minutes)
    state, loss = step_fn(state, root_key, token_table, jnp.float32(scale))
    pending.append(loss)
    out_of_time = args.max_minutes > 0 and time.time() - session_start > 60 * args.max_minutes
    done = step + 1 == args.steps or out_of_time
    saving = done or time.time() - last_save > 60 * args.checkpoint_minutes
    if (step + 1) % 50 == 0 or saving:
      losses.extend(float(x) for x in jax.device_get(pending))
      pending = []
      bar.set_postfix(loss=f"{np.mean(losses[-200:]):.4f}", lr=f"{scale * args.lr:.2g}")
    if saving:
      meta.update(step=step + 1, wall_seconds=time.time() - start, loss=float(np.mean(losses[-200:])))
      save_checkpoint(args.workdir, state, meta)
      print(f"\ncheckpoint at step {step + 1}, loss {meta['loss']:.4f}", flush=True)
      last_save = time.time()
    if out_of_time:
      print(f"stopping after {args.max_minutes} minutes at step {step + 1}", flush=True)
      break


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--workdir", required=True, help="checkpoints and the learned tokenizer")
  parser.add_argument("--steps", type=int, default=6000, help="total optimizer steps")
  parser.add_argument("--batch", type=int, default=32, help="images per step, a multiple of 8")
  parser.add_argument("--lr", type=float, default=5e-4, help="AdamW peak learning rate")
  parser.add_argument("--warmup", type=int, default=300, help="linear learning-rate warm-up steps")
  parser.add_argument("--cooldown-from", type=int, default=0,
                      help="cosine-decay the learning rate from this step to 0.1x at --steps; 0: none")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cameras", default="base", choices=sorted(CAMERA_CONFIGS),
                      help="camera distribution of the renders: configs/base.py's or configs/shapes.py's")
  parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128], help="UNet widths")
  parser.add_argument("--text-width", type=int, default=256, help="CLIP width = cross-attention dim")
  parser.add_argument("--text-layers", type=int, default=2)
  parser.add_argument("--camera-dim", type=int, default=0,
                      help="> 0: a camera-conditioned UNet (nerf.camera.conditioning, each value embedded "
                           "in this many channels); with --init-from-weights of a text-only prior, the "
                           "camera input is added at zero")
  parser.add_argument("--camera-maps", action="store_true",
                      help="the UNet also takes two camera-map channels (stable_diffusion.camera_maps: "
                           "where each pixel lies from the origin's projection); with --init-from-weights "
                           "of a prior without them, they are added at zero")
  parser.add_argument("--camera-lr-scale", type=float, default=1.0,
                      help="the camera input's layers learn at this multiple of the learning rate")
  parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
  parser.add_argument("--max-minutes", type=float, default=0.0,
                      help="stop (checkpoint and export) after this long in this session; 0: no limit")
  parser.add_argument("--cooldown-minutes", type=float, default=0.0,
                      help="cosine-decay the learning rate to 0.1x over the last this many minutes of "
                           "--max-minutes, by wall clock (instead of --cooldown-from); 0: none")
  parser.add_argument("--init-from", default="",
                      help="start from the params of this workdir's checkpoint (see warm_start)")
  parser.add_argument("--init-from-weights", default="",
                      help="start from an exported prior (e.g. dreamfusion_jax/shapes/weights): its EMA "
                           "weights and tokenizer, a fresh optimizer; ignored once the workdir has a "
                           "checkpoint and --resume is given")
  parser.add_argument("--shape-weights", type=int, nargs=len(captions.SHAPES),
                      default=[1] * len(captions.SHAPES),
                      help="relative share of each shape in a batch, in the order " +
                           " ".join(captions.SHAPES) + "; --batch must be a multiple of their sum")
  parser.add_argument("--max-timestep", type=int, default=prior_model.NUM_TRAIN_TIMESTEPS,
                      help="draw the training ticks from [0, this) instead of all %d (a fine-tune on the "
                           "range SDS queries)" % prior_model.NUM_TRAIN_TIMESTEPS)
  parser.add_argument("--resume", action="store_true", help="continue from the workdir's checkpoint")
  parser.add_argument("--export-only", action="store_true", help="export the latest checkpoint, no training")
  parser.add_argument("--out", default="",
                      help="where the diffusers layout is written (default WORKDIR/export; "
                           "--out dreamfusion_jax/shapes/weights replaces the shipped prior)")
  args = parser.parse_args()
  # Never the shipped folder by default: a fine-tune, a probe or a benchmark of the step that forgot
  # --out once exported over dreamfusion_jax/shapes/weights.
  args.out = args.out or os.path.join(args.workdir, "export")
  if args.init_from and args.init_from_weights:
    parser.error("--init-from and --init-from-weights: give one of them")
  if args.cooldown_minutes:
    if args.cooldown_from:
      parser.error("--cooldown-from and --cooldown-minutes: give one of them")
    if not 0 < args.cooldown_minutes <= args.max_minutes:
      parser.error(f"--cooldown-minutes must be in (0, --max-minutes] (--max-minutes "
                   f"{args.max_minutes:g}); got {args.cooldown_minutes:g}")
  if not 1 <= args.max_timestep <= prior_model.NUM_TRAIN_TIMESTEPS:
    parser.error(f"--max-timestep must be in [1, {prior_model.NUM_TRAIN_TIMESTEPS}]; got {args.max_timestep}")
  try:
    world.shape_counts(args.batch, tuple(args.shape_weights))
  except ValueError as e:
    parser.error(f"--batch / --shape-weights: {e}")
  if not args.export_only:
    train(args)
  export(args.workdir, args.out)


if __name__ == "__main__":
  main()
