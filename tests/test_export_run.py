"""export_all on a freshly initialised tiny scene: every requested file, or a notice for an empty field."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import trimesh

from dreamfusion_jax import config_files
from dreamfusion_jax.export import run
from dreamfusion_jax.export import video
from dreamfusion_jax.nerf import field


def tiny_config(**export):
  config = config_files.load(config_files.TINY)
  with config.unlocked():
    config.export.video_frames = 3
    config.export.mesh_resolution = 20
    for name, value in export.items():
      config.export[name] = value
  return config


def test_export_all_writes_videos_and_mesh(tmp_path):
  config = tiny_config()
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.key(0))
  # At init the MLP's raw density is ~0, i.e. density ~1 everywhere: a haze that renders opaque across
  # the 2.8-wide bounding sphere. Lowering it by e^3 leaves the density blob (App. A) as the object.
  params["params"]["field"]["density"]["bias"] = params["params"]["field"]["density"]["bias"] - 3.0
  out = run.export_all(config, scene, params, str(tmp_path), ("mp4", "gif", "glb", "obj"), jax.random.key(1))
  assert out["notices"] == []
  assert sorted(k for k in out if k.startswith("turntable_")) == sorted(f"turntable_{m}" for m in video.MODES)
  for mode in video.MODES:
    mp4, gif = out[f"turntable_{mode}"]
    assert video.read_video(gif).shape == (3, 16, 16, 3)
    assert video.read_video(mp4).shape == (3, 16, 16, 3)
  # The blob (radius sigma_tau = 0.2) is what the mesh encloses; its colours are the field's albedo.
  glb, obj = out["mesh"]
  assert os.path.exists(obj)
  mesh = trimesh.load(glb, force="mesh", process=False)
  radii = np.linalg.norm(mesh.vertices, axis=-1)
  assert mesh.is_watertight and mesh.volume > 0
  assert 0.1 < radii.min() and radii.max() < 0.5  # a closed surface around the origin
  _, albedo_fn = run.field_fns(scene, params)
  expected = np.asarray(albedo_fn(np.asarray(mesh.vertices, np.float32)))
  np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3] / 255.0, expected, atol=1 / 255 + 1e-4)


def test_empty_field_is_a_notice_not_a_failure(tmp_path):
  config = tiny_config()
  scene = field.make_scene(config)
  params = field.init_params(scene, jax.random.key(0))
  # exp(-30 + blob) is transparent everywhere.
  params["params"]["field"]["density"]["bias"] = params["params"]["field"]["density"]["bias"] - 30.0
  out = run.export_all(config, scene, params, str(tmp_path), ("glb",), jax.random.key(1))
  assert "mesh" not in out
  assert len(out["notices"]) == 1 and "renders as empty" in out["notices"][0]
  assert "renders as empty" in (tmp_path / "mesh_empty.txt").read_text()


def test_latent_render_exports_geometry_only(tmp_path):
  config = tiny_config()
  with config.unlocked():
    config.prior.latent_render = True
    config.nerf.background_color = (1.0,)
  scene = field.make_scene(config, out_channels=4)  # background colour needs 4 values then
  params = field.init_params(scene, jax.random.key(0))
  out = run.export_all(config, scene, params, str(tmp_path), ("gif", "ply"), jax.random.key(1))
  assert sorted(k for k in out if k.startswith("turntable_")) == ["turntable_depth", "turntable_normals"]
  assert "latent" in out["notices"][0]
  assert os.path.exists(out["mesh"][0])


@pytest.mark.parametrize("keep", [0, 1])
def test_the_written_mesh_drops_floaters_when_the_config_says(tmp_path, monkeypatch, keep):
  """export.mesh_keep_largest reaches the written mesh: a ball of radius 0.4 and a floater of radius 0.15
  beside it come out as two pieces with 0, as the ball alone with 1 (configs/shapes.py's setting)."""
  config = tiny_config(mesh_resolution=48, mesh_level=1.0, mesh_keep_largest=keep)

  def density(points):
    points = np.asarray(points)
    ball = np.linalg.norm(points, axis=-1) < 0.4
    floater = np.linalg.norm(points - np.asarray([0.8, 0.0, 0.0]), axis=-1) < 0.15
    return (10.0 * (ball | floater)).astype(np.float32)

  monkeypatch.setattr(run, "field_fns", lambda scene, params: (density, None))
  out = run.export_all(config, None, None, str(tmp_path), ("obj",), jax.random.key(0))
  mesh = trimesh.load(out["mesh"][0], force="mesh")
  pieces = mesh.split(only_watertight=False)
  assert len(pieces) == (2 if keep == 0 else 1)
  radii = np.linalg.norm(mesh.vertices, axis=-1)
  assert radii.max() > 0.85 if keep == 0 else radii.max() < 0.5  # the floater's far side at 0.95


def test_unknown_format_fails_before_rendering(tmp_path):
  config = tiny_config()
  with pytest.raises(ValueError, match="config.export.formats"):
    run.export_all(config, None, None, str(tmp_path), ("mp4", "usdz"), jax.random.key(0))


def test_export_cli_refuses_a_folder_without_a_run_with_one_message(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  (tmp_path / "notes.txt").write_text("not a run")
  done = subprocess.run([sys.executable, "-m", "dreamfusion_jax.export", "--workdir", str(tmp_path)],
                        cwd=repo, capture_output=True, text=True, check=False)
  assert done.returncode == 1, done.stderr[-3000:]
  assert f"error: {tmp_path / 'config.json'} not found" in done.stderr and "Traceback" not in done.stderr
  assert sorted(os.listdir(tmp_path)) == ["notes.txt"], "nothing written"
