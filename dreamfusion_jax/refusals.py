"""What the command-line entry points do with a refusal: print its message and exit 1, no traceback.

A refusal is an error about the user's input, raised before any work is done: a config value out of
range, a workdir that cannot be written or holds another run, a corrupt or mismatched checkpoint,
missing prior weights. Its message already names the field or file and says what to do; a Python
traceback (or absl's listing of every flag, for app.UsageError) around it only hides that.
A run stopped by a non-finite loss is printed the same way: its message names the step and the
settings to change, and the last good checkpoint is kept.
"""

import contextlib
import sys

from dreamfusion_jax import checkpoint
from dreamfusion_jax import config_check
from dreamfusion_jax import workdir
from dreamfusion_jax.prior import errors as prior_errors

REFUSALS = (config_check.ConfigError, workdir.WorkdirError, checkpoint.CheckpointError,
            prior_errors.PriorNotFoundError)


class Stop(Exception):
  """A run that stopped (not a refusal: it did work) with a message that says all there is to say.

  A base for such errors where they are raised (train.NonFiniteError), so that this module, which every
  entry point imports, stays free of the training code's imports.
  """


@contextlib.contextmanager
def as_messages():
  """Inside it, a REFUSALS error or a Stop ends the program: "error: <message>" on stderr and exit status 1.

  Also a decorator: `@refusals.as_messages()` on an entry point's main covers everything it runs.
  """
  try:
    yield
  except REFUSALS + (Stop,) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(1) from e
