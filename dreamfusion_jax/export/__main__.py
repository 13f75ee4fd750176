r"""Export any checkpoint of a run: turntable videos per shading mode, a coloured mesh, a view grid.

  python -m dreamfusion_jax.export --workdir runs/corgi [--step 5000] [--formats mp4,glb]

Outputs go to WORKDIR/export/step_<N>/ (the same place a finished run writes to), so exporting an
older step never overwrites a newer one.
"""

import json

from absl import app
from absl import flags

from dreamfusion_jax import refusals
from dreamfusion_jax import summaries
from dreamfusion_jax.export import run as export_run

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (holds config.json and checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest).")
_FORMATS = flags.DEFINE_list("formats", None, "Subset of mp4,gif,glb,obj (default: the run's config).")
flags.mark_flag_as_required("workdir")


@refusals.as_messages()
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summaries.quiet_library_logs()
  written = export_run.export_checkpoint(_WORKDIR.value, _STEP.value, _FORMATS.value)
  print(json.dumps(written, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
