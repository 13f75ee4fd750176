r"""Export any checkpoint of a run: turntable videos per shading mode, a coloured mesh, a view grid.

  python -m dreamfusion_jax.export --workdir runs/corgi [--step 5000] [--formats mp4,glb]

Outputs go to WORKDIR/export/step_<N>/ (the same place a finished run writes to), so exporting an
older step never overwrites a newer one.
"""

import json
import os

from absl import app
from absl import flags
import jax
import ml_collections

from dreamfusion_jax import checkpoint
from dreamfusion_jax.export import run as export_run
from dreamfusion_jax.nerf import field

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (holds config.json and checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest).")
_FORMATS = flags.DEFINE_list("formats", None, "Subset of mp4,gif,glb,obj (default: the run's config).")
flags.mark_flag_as_required("workdir")


def out_channels(params) -> int:
  """Channels the field was trained with (3 for RGB, 4 for directly rendered latents)."""
  return int(params["params"]["field"]["albedo"]["kernel"].shape[-1])


def export_checkpoint(workdir: str, step=None, formats=None) -> dict:
  """Restores a checkpoint of `workdir` and writes its exports; returns the written paths."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} not found: --workdir must be a folder written by "
                            "python -m dreamfusion_jax.main.")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  params, step = checkpoint.restore_params(workdir, step)
  scene = field.make_scene(config, out_channels=out_channels(params))
  out_dir = os.path.join(workdir, "export", f"step_{step}")
  written = export_run.export_all(config, scene, params, out_dir, formats or config.export.formats,
                                  jax.random.PRNGKey(config.seed))
  return dict(written, step=step, out_dir=out_dir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  written = export_checkpoint(_WORKDIR.value, _STEP.value, _FORMATS.value)
  print(json.dumps(written, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
