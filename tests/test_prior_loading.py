"""The prior loader: saved tiny priors load to the same model, and broken folders fail clearly."""

import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from dreamfusion_jax.prior import checkpoint
from dreamfusion_jax.prior import random_init
from dreamfusion_jax.prior import stable_diffusion as sd


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
  """{kind: (in-memory prior, params, saved folder)} for both tiny kinds."""
  out = {}
  for kind in ("latent", "pixel"):
    prior, params = random_init.build_random_prior(f"tiny-{kind}", seed=1)
    path = random_init.save_prior(prior, params, tmp_path_factory.mktemp(kind) / "prior")
    out[kind] = (prior, params, path)
  return out


_JITTED = {}


def _noise_call(prior, params, seed=0):
  """ε̂ on a fixed random input; one compiled UNet per prior object (compiles dominate these tests)."""
  k1, _ = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(k1, (2, prior.sample_size, prior.sample_size, prior.channels))
  emb = prior.encode_text(params, ["a red cube, front view", ""])
  fn = _JITTED.setdefault(id(prior), (prior, jax.jit(prior.predict_noise)))[1]
  return fn(params, x, jnp.array([20, 700]), emb)


@pytest.mark.parametrize("kind", ["latent", "pixel"])
def test_loaded_prior_equals_in_memory_prior(priors, kind):
  prior, params, path = priors[kind]
  loaded, loaded_params = sd.load_prior(path)
  assert (loaded.kind, loaded.sample_size, loaded.channels, loaded.image_size) == (
      prior.kind, prior.sample_size, prior.channels, prior.image_size)
  assert loaded.scaling_factor == prior.scaling_factor
  np.testing.assert_allclose(loaded.alphas_cumprod, prior.alphas_cumprod, rtol=1e-12)
  assert set(loaded_params) == {"unet", "text_encoder"} | ({"vae"} if kind == "latent" else set())
  want, got = flatten_dict(params), flatten_dict(loaded_params)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg="/".join(key))
  np.testing.assert_allclose(
      _noise_call(loaded, loaded_params), _noise_call(prior, params), rtol=1e-6, atol=1e-6)


def test_latent_prior_encodes_through_the_vae(priors):
  prior, params, _ = priors["latent"]
  rgb = jax.random.uniform(jax.random.PRNGKey(0), (2, 12, 12, 3))
  z, vjp = jax.jit(lambda r: jax.vjp(lambda r: prior.encode_image(params, r), r))(rgb)
  assert z.shape == (2, prior.sample_size, prior.sample_size, 4)

  # The posterior mean of the image resized to image_size and mapped to [-1, 1], scaled: redo it raw.
  @jax.jit
  def raw(rgb):
    x = jax.image.resize(rgb, (2, prior.image_size, prior.image_size, 3), "bilinear") * 2 - 1
    x = jnp.transpose(x, (0, 3, 1, 2))
    return prior.vae.apply({"params": params["vae"]}, x, method="encode").latent_dist.mean

  np.testing.assert_allclose(z, raw(rgb) * prior.scaling_factor, rtol=1e-5, atol=1e-6)
  # Differentiable w.r.t. the image: the NeRF's gradient flows through the frozen encoder.
  assert float(jnp.abs(vjp(jnp.ones_like(z))[0]).sum()) > 0


def test_pixel_prior_maps_images_to_unit_range(priors):
  prior, params, _ = priors["pixel"]
  rgb = jax.random.uniform(jax.random.PRNGKey(0), (1, prior.sample_size, prior.sample_size, 3))
  x = prior.encode_image(params, rgb)
  np.testing.assert_allclose(x, 2 * rgb - 1, atol=1e-6)
  np.testing.assert_allclose(prior.decode(params, x), rgb, atol=1e-6)


def _copy(path, tmp_path):
  dst = tmp_path / "copy"
  shutil.copytree(path, dst)
  return dst


def _no_heavy_work(monkeypatch):
  """Reading any weights fails the test: the error must come from the folder check first."""

  def boom(*args, **kwargs):
    raise AssertionError("weights were read before the folder check failed")

  monkeypatch.setattr(checkpoint, "load_diffusers_model", boom)
  monkeypatch.setattr(checkpoint, "load_text_encoder", boom)


@pytest.mark.parametrize("component", ["unet", "tokenizer", "vae", "text_encoder"])
def test_missing_component_is_one_clear_error(priors, tmp_path, monkeypatch, component):
  dst = _copy(priors["latent"][2], tmp_path)
  shutil.rmtree(dst / component)
  _no_heavy_work(monkeypatch)
  with pytest.raises(sd.PriorNotFoundError) as info:
    sd.load_prior(str(dst))
  message = str(info.value)
  assert f"{component}/" in message and str(dst) in message
  assert "huggingface-cli download stabilityai/stable-diffusion-2-1-base" in message
  others = {"unet", "tokenizer", "vae", "text_encoder"} - {component}
  assert not any(re.search(rf"- {o}/", message) for o in others), message


def test_every_missing_piece_is_listed_at_once(priors, tmp_path, monkeypatch):
  dst = _copy(priors["latent"][2], tmp_path)
  shutil.rmtree(dst / "unet")
  os.remove(dst / "tokenizer" / "merges.txt")
  os.remove(dst / "scheduler" / "scheduler_config.json")
  _no_heavy_work(monkeypatch)
  with pytest.raises(sd.PriorNotFoundError, match=r"(?s)unet/.*merges\.txt.*scheduler_config\.json"):
    sd.load_prior(str(dst))


def test_pickled_weights_need_from_pt(priors, tmp_path, monkeypatch):
  dst = _copy(priors["pixel"][2], tmp_path)
  os.rename(dst / "unet" / "diffusion_flax_model.msgpack", dst / "unet" / "diffusion_pytorch_model.bin")
  _no_heavy_work(monkeypatch)
  with pytest.raises(sd.PriorNotFoundError, match="from_pt=True"):
    sd.load_prior(str(dst))


def test_pixel_prior_forced_to_latent_names_the_vae(priors, monkeypatch):
  _no_heavy_work(monkeypatch)
  with pytest.raises(sd.PriorNotFoundError, match="vae/: folder missing"):
    sd.load_prior(priors["pixel"][2], require_vae=True)


def test_unknown_folder_and_uncached_hub_id(tmp_path):
  with pytest.raises(sd.PriorNotFoundError, match="no such folder"):
    sd.load_prior(str(tmp_path / "nothing" / "here"))
  with pytest.raises(sd.PriorNotFoundError, match="not in the local hub cache"):
    sd.load_prior("no-such-owner-xyz/no-such-model", local_files_only=True)


def test_bad_dtype_is_refused(priors):
  with pytest.raises(ValueError, match="float32, bfloat16"):
    sd.load_prior(priors["pixel"][2], dtype="float16")


_SEQUENCE = re.compile(
    r"^(down_blocks|up_blocks|resnets|attentions|transformer_blocks|downsamplers|upsamplers|net|to_out)_(\d+)$")
_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _to_pytorch_names(params):
  """Flax params → a PyTorch-named state dict, as diffusers' PyTorch models save them."""
  state = {}
  for path, value in flatten_dict(params).items():
    *modules, leaf = path
    modules = [_SEQUENCE.sub(r"\1.\2", m) for m in modules]
    modules[-1] = _VAE_ATTENTION.get(modules[-1], modules[-1])
    value = np.asarray(value)
    if leaf == "kernel":
      value, leaf = (value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T), "weight"
    elif leaf == "scale":
      leaf = "weight"
    state[".".join(modules + [leaf])] = np.ascontiguousarray(value)
  return state


def test_safetensors_weights_load_without_torch(priors, tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  _, params, path = priors["latent"]
  dst = _copy(path, tmp_path)
  for sub in ("unet", "vae"):
    os.remove(dst / sub / "diffusion_flax_model.msgpack")
    save_file(_to_pytorch_names(params[sub]), str(dst / sub / "diffusion_pytorch_model.safetensors"),
              metadata={"format": "pt"})
  _, loaded = sd.load_prior(str(dst))
  for sub in ("unet", "vae"):
    want, got = flatten_dict(params[sub]), flatten_dict(loaded[sub])
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg="/".join(key))


def test_bfloat16_prior_agrees_with_float32(priors):
  """bf16 params and compute: ε̂ within 3% relative L2 error of float32 (bf16 has an 8-bit mantissa)."""
  p32, params32, path = priors["latent"]
  p16, params16 = sd.load_prior(path, dtype="bfloat16")
  assert all(v.dtype == jnp.bfloat16 for v in jax.tree_util.tree_leaves(params16))
  e32, e16 = _noise_call(p32, params32), _noise_call(p16, params16)
  assert e16.dtype == jnp.float32
  rel = float(jnp.linalg.norm(e16 - e32) / jnp.linalg.norm(e32))
  assert rel < 3e-2, rel


def test_a_missing_prior_is_a_refusal_and_refusing_needs_no_diffusers(tmp_path, capsys):
  """Every entry point imports `refusals`; it catches PriorNotFoundError without importing diffusers."""
  from dreamfusion_jax import refusals  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as stopped, refusals.as_messages():
    sd.load_prior(str(tmp_path / "absent"))
  assert stopped.value.code == 1
  assert "error: Cannot load the diffusion prior from" in capsys.readouterr().err
  probe = ("import sys; import dreamfusion_jax.refusals; "
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')))")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=root))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loaded_weights_are_not_committed_to_the_host(priors, dtype):
  """from_pretrained commits weights to the host CPU, and a jitted program given a committed array runs
  on its device: on a GPU machine train_prior's step ran on the host's cores (~100x slower). load_prior
  hands the weights back uncommitted on the default device, so programs run where their other inputs are."""
  for kind in ("latent", "pixel"):
    _, loaded = sd.load_prior(priors[kind][2], dtype=dtype)
    for path, leaf in flatten_dict(loaded).items():
      assert not leaf.committed, (kind, "/".join(path))
      assert leaf.devices() == {jax.devices()[0]}, (kind, "/".join(path))


def test_a_program_on_loaded_weights_runs_on_the_default_device_not_the_host(priors):
  """The GPU machine's case on a CPU: two host devices, the default set to the second (as a GPU is the
  default beside the host CPU); diffusers commits what it loads to the first. A jitted UNet call on
  the loaded weights and an uncommitted input must run on the default device."""
  probe = """
import sys
import jax, jax.numpy as jnp
jax.config.update("jax_default_device", jax.devices()[1])
from dreamfusion_jax.prior import stable_diffusion as sd
prior, params = sd.load_prior(sys.argv[1])
x = jnp.zeros((2, prior.sample_size, prior.sample_size, prior.channels))
emb = prior.encode_text(params, ["a red cube", ""])
out = jax.jit(prior.predict_noise)(params, x, jnp.array([20, 700]), emb)
print("devices", sorted(d.id for d in out.devices()))
"""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", probe, str(priors["pixel"][2])], cwd=root,
                          capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "devices [1]"
