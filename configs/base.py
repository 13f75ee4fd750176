"""DreamFusion with Stable Diffusion 2.1-base and the paper's defaults (Poole et al. 2023, App. A).

Run:
  python -m dreamfusion_jax.main --config configs/base.py \
      --config.prompt="a DSLR photo of a corgi" --workdir runs/corgi

Switch the distillation loss with `--config.distill=sjc` or `--config.distill=ism`; each method keeps
its own defaults (guidance scale, t range) in its own section, so switching needs nothing else.
"""

import ml_collections


def get_config(arg=None):
  """Returns the locked base config. `arg` is unused here; variants override fields."""
  del arg
  c = ml_collections.ConfigDict()
  c.prompt = ""  # the text prompt; required
  c.negative_prompt = ""  # text of the unconditional branch of classifier-free guidance
  c.seed = 0  # root PRNG seed; every step's key is fold_in(root, step)
  c.distill = "sds"  # sds | sjc | ism: which score-distillation loss trains the NeRF
  c.num_steps = 15000  # the paper: 15k iterations
  c.batch_per_device = 1  # views per device per step; global batch = this x device count (paper: 4 chips x 1)

  c.prior = p = ml_collections.ConfigDict()
  p.model = "stabilityai/stable-diffusion-2-1-base"  # local folder or hub id, diffusers layout
  p.ensemble = ()  # more priors (folders / hub ids) whose noise predictions are averaged with model's
  p.dtype = "bfloat16"  # float32 | bfloat16: dtype of the frozen UNet/VAE/text-encoder params
  p.local_files_only = False  # never contact a hub, even for a hub id
  p.revision = None  # hub revision to load (e.g. "flax" or "bf16"); None: the default branch
  p.from_pt = False  # allow converting PyTorch .bin/.ckpt weights (pickles: opt-in only; needs torch)
  p.latent_render = False  # render 4 latent channels directly (latent-NeRF / SJC) instead of VAE-encoding RGB
  p.view_dependent = True  # append "front/side/back/overhead view" to the prompt per sampled view
  p.view_interpolate = False  # blend front/side/back embeddings by azimuth instead of hard labels
  p.camera_zoom = 1.0  # camera-conditioned priors: the views' focal is divided by this for the prior's input
  p.textureless_drop_words = ()  # words dropped from the prompt for textureless views (() : one prompt)

  # Score Distillation Sampling (DreamFusion): g = w(t)(eps_hat - eps).
  c.sds = s = ml_collections.ConfigDict()
  s.guidance_scale = 100.0  # CFG omega in eps_u + omega(eps_c - eps_u); the paper uses 100
  s.t_min = 0.02  # t ~ U(t_min, t_max), as a fraction of the schedule's training steps
  s.t_max = 0.98
  s.t_max_start = 0.98  # t_max is annealed linearly from this value ...
  s.t_anneal_steps = 0  # ... over this many steps (0: no annealing)
  s.weighting = "sigma2"  # sigma2 (w = 1 - alphabar, the paper) | uniform | snr_sqrt (sqrt((1-ab)/ab))
  s.num_samples = 1  # draws of (t, eps) per view per step, their gradients averaged (the paper: 1)
  s.denoise_weight = 1.0  # λ in w(t)(λ(ε_u − ε) + ω(ε_c − ε_u)): 1 is SDS, 0 the guidance term alone
  s.threshold = "none"  # pixel priors: Imagen's thresholding of the guided x0: none | static | dynamic ...
  s.threshold_percentile = 0.995  # ... dynamic: at this percentile of |x0| (Imagen: 0.995)

  # Score Jacobian Chaining (Wang et al. 2023): perturb-and-average scoring in the VE view.
  c.sjc = j = ml_collections.ConfigDict()
  j.guidance_scale = 100.0  # SJC's released configs also guide with 100
  j.num_perturb = 1  # n in the perturb-and-average estimate (SJC: 1)
  j.weighting = "sigma"  # sigma: (D - x) / sigma, what SJC's released code backpropagates (= SDS with
  #                        uniform weighting); none: (D - x) / sigma^2, the paper's score itself
  j.tick_min = 30  # sigma is drawn from the schedule's ticks [tick_min, T - tick_trim) (SJC: [30:-10])
  j.tick_trim = 10
  j.emptiness_weight = 1e4  # SJC's emptiness loss log(1 + 10 w) x 1e4 ...
  j.emptiness_ramp = 20.0  # ... multiplied by 20 after half the steps
  j.center_depth_weight = 0.0  # SJC's centre-depth loss (0 disables)

  # Interval Score Matching (LucidDreamer, Liang et al. 2024).
  c.ism = i = ml_collections.ConfigDict()
  i.guidance_scale = 7.5  # the paper's CFG for ISM
  i.t_min = 0.02
  i.t_max = 0.5  # upper bound of t after annealing ...
  i.t_max_start = 0.98  # ... from this value
  i.t_anneal_steps = 1500  # ... over this many steps
  i.delta_t = 50  # interval delta_T between x_s and x_t, in schedule steps (paper: 25-80) ...
  i.delta_t_start = 100  # ... annealed from this value over t_anneal_steps
  i.delta_s = 200  # DDIM inversion stride delta_S (paper: 200) ...
  i.inversion_steps = 5  # ... taken in at most this many steps

  # NeRF field: the mip-NeRF 360 MLP DreamFusion uses.
  c.nerf = n = ml_collections.ConfigDict()
  n.encoding = "ipe"  # ipe (integrated positional encoding) | fourier | hashgrid (Instant-NGP)
  n.num_freqs = 8  # L = 8 octaves of the positional encoding
  # encoding=ipe: open the octaves coarse to fine over this many steps (0: all open from the start) ...
  n.coarse_to_fine_steps = 0
  n.coarse_to_fine_start = 2.0  # ... from the octave that is at exp(-1/2) of its amplitude at step 0
  n.hash_levels = 16  # hashgrid: levels (Instant-NGP / threestudio: 16) ...
  n.hash_features = 2  # ... features per level ...
  n.hash_log2_table_size = 19  # ... table rows per level, log2 ...
  n.hash_base_resolution = 16  # ... coarsest and ...
  n.hash_max_resolution = 2048  # ... finest grid resolution across [-bound, bound]
  n.width = 128  # hidden width of the residual MLP
  n.num_blocks = 5  # residual blocks (swish + LayerNorm)
  n.density_activation = "exp"  # exp | softplus
  n.blob_density = 5.0  # lambda_tau of the density blob lambda_tau exp(-|mu|^2 / (2 sigma_tau^2))
  n.blob_radius = 0.2  # sigma_tau
  n.density_bias = -1.0  # added to the raw density (mip-NeRF 360's default): thins the initial fog
  n.bound = 1.4  # radius of the scene's bounding sphere
  n.background = "mlp"  # mlp (environment map on the ray direction) | solid | random
  n.background_color = (1.0, 1.0, 1.0)  # colour for background=solid
  n.background_width = 64  # hidden width of the environment-map MLP
  n.random_background_prob = 0.0  # background=mlp: probability that a training view's background
  #                                  is a random flat colour instead of the environment map
  n.background_saturation = 1.0  # random flat colours: 1 = uniform RGB, below 1 pulled towards a grey

  # Volume rendering.
  c.render = r = ml_collections.ConfigDict()
  r.resolution = 64  # rendered image side in pixels (paper: 64)
  r.num_samples = 64  # stratified samples per ray inside the bounding sphere
  r.num_importance = 64  # extra samples resampled from the coarse weights (0 disables)
  r.stratified = True  # jitter sample positions during training
  r.chunk = 0  # rays per rematerialised chunk in training renders (0: the whole view at once)

  # Camera and light sampling (paper App. A).
  c.camera = cam = ml_collections.ConfigDict()
  cam.elevation_range = (-10.0, 90.0)  # degrees
  cam.late_elevation_step = 0  # from this training step on (0: never) elevations come from ...
  cam.late_elevation_range = (-10.0, 90.0)  # ... this range instead
  cam.azimuth_range = (0.0, 360.0)  # degrees; azimuth 0 is the front view
  cam.distance_range = (1.0, 1.5)  # paper's camera distance, in units of the scene
  cam.focal_range = (0.7, 1.35)  # focal = lambda x resolution, lambda ~ U(...)
  cam.position_jitter = 0.1  # camera position += U(-j, j)^3
  cam.look_at_std = 0.2  # look-at point ~ N(0, std^2 I)
  cam.up_std = 0.02  # up vector += N(0, std^2 I)
  cam.light_std = 1.0  # light position ~ N(camera position, std^2 I) ...
  cam.light_distance_range = (0.8, 1.5)  # ... its distance scaled by U(...)
  cam.overhead_elevation = 60.0  # above this elevation the view label is "overhead"

  # Shading-mode schedule: ambient-only (albedo) first, then random lambertian / textureless.
  c.shading = sh = ml_collections.ConfigDict()
  sh.ambient_only_steps = 1000  # first steps render albedo only
  sh.shaded_prob = 0.75  # afterwards, shaded with this probability, else albedo
  sh.textureless_prob = 0.5  # when shaded, textureless (albedo = 1) with this probability
  sh.ambient = 0.1  # l_a
  sh.diffuse = 0.9  # l_rho

  # Regularizers.
  c.reg = rg = ml_collections.ConfigDict()
  rg.orientation = 1e-2  # weight of sum_i sg(w_i) max(0, n_i . d)^2 ...
  rg.orientation_start = 1e-4  # ... annealed from this weight ...
  rg.orientation_anneal_steps = 5000  # ... over this many steps
  rg.opacity = 1e-3  # weight of sqrt((sum_i w_i)^2 + 0.01) (paper: 1e-3 ... 5e-3)
  rg.entropy = 0.0  # weight of the binary entropy of the ray opacity (0 disables) ...
  rg.entropy_start = 0  # ... counted from this step ...
  rg.entropy_ramp_steps = 0  # ... rising linearly to its weight over this many steps (0: at once)
  rg.distortion = 0.0  # weight of mip-NeRF 360's distortion loss (distances in scene diameters; 0 disables) ...
  rg.distortion_start = 0  # ... counted from this step ...
  rg.distortion_ramp_steps = 0  # ... rising linearly to its weight over this many steps (0: at once)
  rg.coverage = 0.0  # weight of max(0, covered fraction of a view - coverage_max) (0 disables) ...
  rg.coverage_max = 0.6  # ... the fraction of a view's pixels (mean opacity) an object may cover freely

  # Optimizer. The paper used Distributed Shampoo (lr 1e-4); Adam at 1e-3 is what converges for an MLP
  # NeRF in the PyTorch ports and here, with the same warm-up + cosine shape.
  c.optim = o = ml_collections.ConfigDict()
  o.optimizer = "adam"  # adam
  o.lr = 1e-3  # peak learning rate
  o.init_lr = 1e-6  # linear warm-up from this ...
  o.warmup_steps = 500  # ... over this many steps
  o.end_lr = 1e-5  # cosine decay to this at num_steps
  o.grad_clip = 1.0  # global-norm clip (0 disables)
  o.eps = 1e-15  # Adam epsilon; SDS gradients are small
  # Exports and scores use an exponential moving average of the NeRF params with this decay per step
  # (Polyak averaging of the iterates: the SDS gradient's noise averaged out of the result); training
  # itself is unchanged. 0: off, the last iterate. The average starts from the initial params, whose
  # weight after N steps is decay^N (0.99: 0.2% after 600 steps): keep 1 / (1 - decay) well under N.
  o.ema_decay = 0.0

  # Logging, checkpoints, export.
  c.log = lg = ml_collections.ConfigDict()
  lg.every = 50  # scalars to TensorBoard every this many steps
  lg.images_every = 500  # image grid of fixed views every this many steps
  lg.image_resolution = 64  # side of the logged views
  lg.checkpoint_every = 1000  # orbax checkpoint every this many steps
  lg.keep_checkpoints = 3  # keep the last N checkpoints

  c.export = e = ml_collections.ConfigDict()
  e.video_frames = 120  # frames of the 360-degree turntable
  e.video_fps = 30
  e.video_resolution = 256  # side of the turntable frames
  e.video_elevation = 15.0  # degrees
  e.video_distance = 1.4  # camera distance of the turntable
  e.mesh_resolution = 192  # marching-cubes grid per side
  e.mesh_level = -1.0  # density iso-level; <= 0 picks the level whose surface covers the rendered silhouette
  e.mesh_keep_largest = 0  # keep only the N largest connected components (0 keeps all)
  e.render_chunk = 8192  # rays per call when rendering videos (bounds memory)
  e.formats = ("mp4", "gif", "glb", "obj")  # what is written at the end of a run

  c.lock()
  return c
