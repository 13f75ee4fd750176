"""2D mode: each loss drives an image to the mode of a known prior; the CLI writes the decoded result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dreamfusion_jax import config_files
from dreamfusion_jax.distill import image2d
from dreamfusion_jax.prior import stable_diffusion as sd
from dreamfusion_jax.prior import testing
from dreamfusion_jax.prior import text as text_lib


@pytest.mark.parametrize("method,tolerance", [("sds", 0.15), ("sjc", 0.2), ("ism", 0.05)])
def test_distillation_drives_an_image_to_the_gaussian_mode(method, tolerance):
  """Data N(0.3, 0.5²) per pixel: the density's mode is 0.3 everywhere. From N(0, 1) noise, SDS and SJC
  (random targets) end up hovering around it; ISM's deterministic target converges onto it."""
  prior, mu = testing.GaussianPrior(std=0.5), 0.3
  emb = text_lib.TextEmbeddings(cond=jnp.full((4, 2, 2), mu), uncond=jnp.full((2, 2), mu))
  config = image2d.configure(config_files.load(), "a gray square", method, steps=300)
  x0 = jax.random.normal(jax.random.PRNGKey(1), (2, prior.sample_size, prior.sample_size, 3))
  x, aux = image2d.optimise(config, prior, None, emb, jax.random.PRNGKey(0), lr=0.02, batch=2, x_init=x0)
  rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x - mu))))
  assert rms(x0) > 0.9 and rms(x) < tolerance
  assert abs(float(jnp.mean(x)) - mu) < 0.03
  assert set(aux) >= {"t", "grad_norm"}


def test_cli_writes_the_decoded_image(tmp_path):
  prior_dir = testing.tiny_prior_dir(tmp_path, "pixel")
  out = tmp_path / "x.png"
  x = image2d.main(["--prior", prior_dir, "--prompt", "a red cube", "--method", "sds", "--steps", "2",
                    "--out", str(out), "--lr", "0.1"])
  png = np.asarray(Image.open(out))
  prior, params = sd.load_prior(prior_dir)
  assert png.shape == (prior.image_size, prior.image_size, 3)
  want = image2d.to_uint8(prior.decode(params, x)[0])
  assert np.abs(png.astype(int) - want.astype(int)).max() == 0
  assert float(jnp.abs(x).max()) > 0.05  # two Adam steps of 0.1 moved x off its zero start


def test_unknown_method_is_refused():
  with pytest.raises(ValueError, match="sds, sjc, ism"):
    image2d.configure(config_files.load(), "a red cube", "dds", 10)
