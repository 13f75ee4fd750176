r"""PYTORCH REFERENCE, not part of dreamfusion_jax: one DreamFusion SDS step as the PyTorch ports do it.

The per-step work of stable-dreamfusion / threestudio with Stable Diffusion 2.1-base, in PyTorch, with
randomly initialised diffusers torch models (random weights cost what trained ones cost), so that
`python -m dreamfusion_jax.bench --torch_reference` can put a PyTorch number beside the JAX one:

  * an MLP NeRF of the config's size (Fourier encoding, residual blocks with LayerNorm + SiLU, exp
    density with the centre blob, sigmoid albedo, an environment-map MLP), B views of R×R rays,
    num_samples stratified + num_importance inverse-CDF samples, normals by autograd (create_graph) for
    Lambertian shading and the orientation loss, alpha compositing, the opacity loss;
  * the render bilinearly upsampled to 512², encoded by `AutoencoderKL` (posterior mean × 0.18215);
  * one classifier-free-guided `UNet2DConditionModel` call on the batch [uncond; cond] (no grad),
    g = (1 − ᾱ_t)(ε̂ − ε), injected with `torch.autograd.backward([latents, reg], [g / B, 1])`
    (the `latents.backward(gradient=grad)` trick, with the regularizers in the same backward pass);
  * global-norm clipping and Adam on the NeRF parameters.

  python bench/torch_reference.py                                  # SD-2.1-base, fp16 UNet/VAE, cuda
  python bench/torch_reference.py --tiny --device cpu --steps 2    # toy sizes: proves it runs anywhere
  python bench/torch_reference.py --model_dir DIR                  # unet/ and vae/ config.json of DIR

Needs torch and diffusers==0.39.0 (`--help` needs neither). Timing as dreamfusion_jax.bench: warm-up
steps, then N steps each synchronised (median ms/step), then N steps with one synchronisation
(steps/s); compile_s is the first step (CUDA/cuDNN set-up and autotuning). The JSON has the same keys
as the bench's "step" entry. TF32 is on by default (`--no-tf32` turns it off), as XLA uses it for float32
matmuls on GPUs by default; the UNet and VAE run in `--dtype` (fp16 as in the ports).
"""

import argparse
import json
import os
import statistics
import time

# stabilityai/stable-diffusion-2-1-base unet/ and vae/ config.json (the fields that set the compute).
SD21_BASE_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],  # head counts, diffusers' historical name
    "cross_attention_dim": 1024, "use_linear_projection": True, "flip_sin_to_cos": True, "freq_shift": 0,
}
SD21_BASE_VAE = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512,
    "scaling_factor": 0.18215,
}
# dreamfusion_jax's "tiny-latent" spec: one UNet level at 8×8 latents, a two-level VAE at 16×16.
TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D"],
    "block_out_channels": [32], "layers_per_block": 1, "attention_head_dim": 2,
    "cross_attention_dim": 32, "use_linear_projection": True,
}
TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2, "block_out_channels": [8, 16], "layers_per_block": 1,
    "latent_channels": 4, "norm_num_groups": 8, "sample_size": 16, "scaling_factor": 0.18215,
}
TEXT_LENGTH = 77  # CLIP's padded prompt length
BACKGROUND_FREQS = 4  # octaves of the environment map's direction encoding (dreamfusion_jax's Background)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
  p.add_argument("--tiny", action="store_true", help="the tiny-latent UNet/VAE instead of SD-2.1-base")
  p.add_argument("--model_dir", default=None, help="read unet/ and vae/ config.json from a diffusers folder")
  p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
  p.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                 help="UNet/VAE dtype (default: float16 on cuda, float32 on cpu)")
  p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True, help="TF32 float32 matmuls")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--batch", type=int, default=1, help="views per step")
  p.add_argument("--resolution", type=int, default=64, help="rendered view side")
  p.add_argument("--num_samples", type=int, default=64)
  p.add_argument("--num_importance", type=int, default=64)
  p.add_argument("--width", type=int, default=128)
  p.add_argument("--num_blocks", type=int, default=5)
  p.add_argument("--num_freqs", type=int, default=8)
  p.add_argument("--background_width", type=int, default=64)
  p.add_argument("--bound", type=float, default=1.4)
  p.add_argument("--guidance_scale", type=float, default=100.0)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--eps", type=float, default=1e-15)
  p.add_argument("--grad_clip", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None, help="write the report here")
  args = p.parse_args(argv)
  if args.tiny and args.model_dir:
    p.error("--tiny and --model_dir are exclusive")
  if min(args.steps, args.batch, args.resolution, args.num_samples, args.width) < 1 or args.warmup < 0:
    p.error("--steps, --batch, --resolution, --num_samples, --width must be >= 1 and --warmup >= 0")
  return args


def argv_from_config(config, prior, steps, warmup, json_path):
  """Arguments that give this reference the sizes of a dreamfusion_jax config (one device's batch).

  prior: "sd21-base", "tiny-latent" or a diffusers folder (the latent priors this reference has).
  """
  if config.distill != "sds" or config.prior.latent_render:
    raise ValueError("the PyTorch reference is the SDS step through the VAE: it needs config.distill=sds "
                     "and config.prior.latent_render=False")
  model = {"tiny-latent": ["--tiny"], "sd21-base": []}.get(prior)
  model = ["--model_dir", prior] if model is None and os.path.isdir(prior) else model
  if model is None:
    raise ValueError(f"prior {prior!r} has no PyTorch counterpart here (sd21-base, tiny-latent or a folder)")
  n, r, o = config.nerf, config.render, config.optim
  sizes = dict(batch=config.batch_per_device, resolution=r.resolution, num_samples=r.num_samples,
               num_importance=r.num_importance, width=n.width, num_blocks=n.num_blocks,
               num_freqs=n.num_freqs, background_width=n.background_width, bound=n.bound,
               guidance_scale=config.sds.guidance_scale, lr=o.lr, eps=o.eps, grad_clip=o.grad_clip,
               steps=steps, warmup=warmup, json=json_path)
  return model + [f"--{k}={v}" for k, v in sizes.items()]


def model_configs(args):
  """(unet config, vae config) dicts for diffusers' from_config."""
  if args.tiny:
    return TINY_UNET, TINY_VAE
  if args.model_dir:
    with open(f"{args.model_dir}/unet/config.json") as f, open(f"{args.model_dir}/vae/config.json") as g:
      return json.load(f), json.load(g)
  return SD21_BASE_UNET, SD21_BASE_VAE


def build_models(args, device, dtype):
  """Randomly initialised, frozen diffusers UNet and VAE in `dtype` on `device`."""
  from diffusers import AutoencoderKL, UNet2DConditionModel  # pylint: disable=g-import-not-at-top
  from diffusers.utils import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity_error()  # random init + .to(dtype) warns about float32 modules it does not have
  unet_config, vae_config = model_configs(args)
  unet = UNet2DConditionModel.from_config(unet_config).to(device, dtype=dtype).eval().requires_grad_(False)
  vae = AutoencoderKL.from_config(vae_config).to(device, dtype=dtype).eval().requires_grad_(False)
  return unet, vae


def build_field(args, device):
  """The NeRF MLP and environment map as plain torch modules (applied by field_forward)."""
  import torch  # pylint: disable=g-import-not-at-top
  nn, w = torch.nn, args.width
  return nn.ModuleDict({
      "input": nn.Linear(3 + 6 * args.num_freqs, w),
      "norms": nn.ModuleList([nn.LayerNorm(w) for _ in range(args.num_blocks)]),
      "blocks": nn.ModuleList([nn.Linear(w, w) for _ in range(args.num_blocks)]),
      "norm_out": nn.LayerNorm(w),
      "density": nn.Linear(w, 1),
      "albedo": nn.Linear(w, 3),
      "bg_hidden": nn.Linear(3 + 6 * BACKGROUND_FREQS, args.background_width),
      "bg_out": nn.Linear(args.background_width, 3),
  }).to(device)


def fourier(x, num_freqs):
  """[..., 3] -> [..., 3 + 6L]: x, sin(2^l x), cos(2^l x)."""
  import torch  # pylint: disable=g-import-not-at-top
  scaled = (x[..., None, :] * 2.0 ** torch.arange(num_freqs, device=x.device)[:, None]).flatten(-2)
  return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def field_forward(f, points, num_freqs):
  """(density [...], albedo [..., 3]): residual MLP, exp density with DreamFusion's blob (5, 0.2)."""
  import torch  # pylint: disable=g-import-not-at-top
  silu = torch.nn.functional.silu
  x = f["input"](fourier(points, num_freqs))
  for norm, block in zip(f["norms"], f["blocks"]):
    x = x + block(silu(norm(x)))
  x = silu(f["norm_out"](x))
  blob = 5.0 * torch.exp(-points.square().sum(-1) / (2 * 0.2**2))
  density = torch.exp((f["density"](x)[..., 0] - 1.0 + blob).clamp(max=30.0))
  return density, torch.sigmoid(f["albedo"](x))


def sample_rays(args, device):
  """Rays (origins, directions [B, R*R, 3]) and lights [B, 3] of B cameras drawn as DreamFusion's."""
  import torch  # pylint: disable=g-import-not-at-top
  b, r = args.batch, args.resolution
  uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(b, device=device)
  elevation, azimuth = torch.deg2rad(uniform(-10.0, 90.0)), torch.deg2rad(uniform(0.0, 360.0))
  distance, focal = uniform(1.0, 1.5), uniform(0.7, 1.35) * r
  position = distance[:, None] * torch.stack([torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation),
                                              torch.cos(elevation) * torch.cos(azimuth)], -1)
  forward = torch.nn.functional.normalize(-position, dim=-1)
  up_hint = torch.tensor([0.0, 1.0, 0.0], device=device).expand_as(forward)
  right = torch.nn.functional.normalize(torch.cross(forward, up_hint, dim=-1) + 1e-6, dim=-1)
  up = torch.cross(right, forward, dim=-1)
  pix = torch.arange(r, device=device, dtype=torch.float32) + 0.5 - r / 2
  v, u = torch.meshgrid(pix, pix, indexing="ij")
  u, v = u.reshape(1, -1, 1) / focal[:, None, None], -v.reshape(1, -1, 1) / focal[:, None, None]
  directions = torch.nn.functional.normalize(
      u * right[:, None] + v * up[:, None] + forward[:, None], dim=-1)
  light = position + torch.randn_like(position)
  return position[:, None].expand_as(directions), directions, light


def render(f, args, origins, directions, light):
  """rgb [B, R*R, 3], orientation loss and opacity loss of the rays (two-pass sampling, autograd normals)."""
  import torch  # pylint: disable=g-import-not-at-top
  b_dot = (origins * directions).sum(-1)
  disc = b_dot.square() - (origins.square().sum(-1) - args.bound**2)
  half = disc.clamp(min=0).sqrt()
  far = torch.where(disc > 0, (-b_dot + half).clamp(min=0), torch.zeros_like(half))
  near = torch.minimum((-b_dot - half).clamp(min=0), far)
  s = torch.linspace(0, 1, args.num_samples + 1, device=origins.device)
  s = s + (torch.rand(near.shape + s.shape, device=s.device) - 0.5) / args.num_samples
  t_edges = near[..., None] + (far - near)[..., None] * s.clamp(0, 1).sort(-1).values

  def points_at(edges):
    mids = 0.5 * (edges[..., 1:] + edges[..., :-1])
    return origins[..., None, :] + mids[..., None] * directions[..., None, :]

  def weights_of(density, edges):
    alpha = 1 - torch.exp(-density * (edges[..., 1:] - edges[..., :-1]))
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-10], -1), -1)
    return alpha * trans

  if args.num_importance > 0:
    with torch.no_grad():  # the coarse pass only places the fine samples
      coarse = weights_of(field_forward(f, points_at(t_edges), args.num_freqs)[0], t_edges) + 1e-5
      cdf = torch.cat([torch.zeros_like(coarse[..., :1]), torch.cumsum(coarse, -1) / coarse.sum(-1, True)], -1)
      u = torch.rand(cdf.shape[:-1] + (args.num_importance,), device=cdf.device).contiguous()
      idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, args.num_samples)
      c0, c1 = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
      e0, e1 = t_edges.gather(-1, idx - 1), t_edges.gather(-1, idx)
      extra = e0 + (u - c0) / (c1 - c0).clamp(min=1e-12) * (e1 - e0)
      t_edges = torch.cat([t_edges, extra], -1).sort(-1).values
  points = points_at(t_edges).requires_grad_(True)
  density, albedo = field_forward(f, points, args.num_freqs)
  (grad,) = torch.autograd.grad(density.sum(), points, create_graph=True)
  normals = -torch.nn.functional.normalize(grad, dim=-1)
  to_light = torch.nn.functional.normalize(light[:, None, None] - points, dim=-1)
  color = albedo * (0.9 * (normals * to_light).sum(-1, True).clamp(min=0) + 0.1)
  weights = weights_of(density, t_edges)
  opacity = weights.sum(-1)
  bg = torch.sigmoid(f["bg_out"](torch.nn.functional.silu(f["bg_hidden"](fourier(directions, BACKGROUND_FREQS)))))
  rgb = (weights[..., None] * color).sum(-2) + (1 - opacity[..., None]) * bg
  facing = (normals * directions[..., None, :]).sum(-1).clamp(min=0)
  orientation = (weights.detach() * facing.square()).sum(-1).mean()
  return rgb, orientation, (opacity.square() + 0.01).sqrt().mean()


def make_step(args, device, dtype):
  """One SDS training step as a closure over the models, the optimiser and random text embeddings."""
  import torch  # pylint: disable=g-import-not-at-top
  functional = torch.nn.functional
  unet, vae = build_models(args, device, dtype)
  field = build_field(args, device)
  optimizer = torch.optim.Adam(field.parameters(), lr=args.lr, eps=args.eps)
  # SD's scaled_linear schedule (Rombach et al. 2022): sqrt(beta) linear from 0.00085 to 0.012.
  alphas_cumprod = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, device=device) ** 2, 0)
  dim, side = unet.config.cross_attention_dim, unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
  cond = torch.randn(args.batch, TEXT_LENGTH, dim, device=device, dtype=dtype)
  uncond = torch.randn(args.batch, TEXT_LENGTH, dim, device=device, dtype=dtype)
  text = torch.cat([uncond, cond])

  def step():
    origins, directions, light = sample_rays(args, device)
    rgb, orientation, opacity = render(field, args, origins, directions, light)
    image = rgb.reshape(args.batch, args.resolution, args.resolution, 3).permute(0, 3, 1, 2)
    image = functional.interpolate(image, (side, side), mode="bilinear", align_corners=False)
    latents = vae.encode((image * 2 - 1).to(dtype)).latent_dist.mean * vae.config.scaling_factor
    with torch.no_grad():
      t = torch.randint(20, 981, (args.batch,), device=device)  # t ~ U(0.02, 0.98) of 1000 steps
      alpha_bar = alphas_cumprod[t].view(-1, 1, 1, 1)
      noise = torch.randn_like(latents)
      noisy = (alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise).to(dtype)
      eps = unet(torch.cat([noisy, noisy]), torch.cat([t, t]), encoder_hidden_states=text).sample
      eps_uncond, eps_cond = eps.chunk(2)
      eps_hat = eps_uncond + args.guidance_scale * (eps_cond - eps_uncond)
      grad = torch.nan_to_num((1 - alpha_bar) * (eps_hat - noise)).to(latents.dtype) / args.batch
    reg = 1e-2 * orientation + 1e-3 * opacity
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward([latents, reg], [grad, torch.ones_like(reg)])
    if args.grad_clip > 0:
      torch.nn.utils.clip_grad_norm_(field.parameters(), args.grad_clip)
    optimizer.step()

  return step


def time_steps(step, args, sync):
  """Timing as dreamfusion_jax.bench: first call, warm-up, N synced (median), N with one sync."""
  start = time.perf_counter()
  step()
  sync()
  first = time.perf_counter() - start
  for _ in range(args.warmup):
    step()
  sync()
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - start)
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  sync()
  per_s = args.steps / (time.perf_counter() - start)
  return {"compile_s": first, "ms_per_step": 1e3 * statistics.median(times), "ms_per_step_min": 1e3 * min(times),
          "steps_per_s": per_s, "views_per_s": per_s * args.batch}


def main(argv=None):
  args = parse_args(argv)
  import diffusers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
  dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
  torch.manual_seed(args.seed)
  torch.backends.cuda.matmul.allow_tf32 = args.tf32
  torch.backends.cudnn.allow_tf32 = args.tf32
  torch.backends.cudnn.benchmark = True  # as the ports set it
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  result = time_steps(make_step(args, device, dtype), args, sync)
  if device.type == "cuda":
    result["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device))
    result["peak_memory_source"] = "torch.cuda.max_memory_allocated"
    kind = torch.cuda.get_device_name(device)
  else:
    import resource  # pylint: disable=g-import-not-at-top
    result["peak_memory_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["peak_memory_source"] = "host max RSS"
    kind = "cpu"
  report = {
      "implementation": "pytorch reference (bench/torch_reference.py)", "device_kind": kind,
      "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
      "dtype": str(dtype).replace("torch.", ""), "batch": args.batch, "tf32": args.tf32,
      "model": "tiny" if args.tiny else (args.model_dir or "sd21-base"), "steps": args.steps,
      "warmup": args.warmup, "args": vars(args), "step": result,
  }
  print(f"PyTorch reference on {kind} ({report['dtype']}, batch {args.batch}): first step "
        f"{result['compile_s']:.1f} s | {result['ms_per_step']:.2f} ms/step (median of {args.steps} synced) | "
        f"{result['steps_per_s']:.2f} steps/s ({args.steps} steps, one sync) | peak memory "
        f"{result['peak_memory_bytes'] / 2**30:.2f} GiB", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2, sort_keys=True)
  return report


if __name__ == "__main__":
  main()
