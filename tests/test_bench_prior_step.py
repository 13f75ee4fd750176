"""bench/prior_train_step.py: bad arguments are refused before any work, and its parts add up to the step.

No timing thresholds: only that XLA's FLOP counts of the parts account for the whole step's.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import prior_train_step  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize("argv, field", [
    (["--parts", "render,unet"], "--parts"),
    (["--batch", "13"], "--batch"),  # not a multiple of the shape weights' sum (12)
    (["--unroll", "0"], "--unroll"),
])
def test_bad_arguments_are_refused_by_name(argv, field, capsys):
  with pytest.raises(SystemExit) as exit_info:
    prior_train_step.parse_args(argv)
  assert exit_info.value.code == 2
  assert field in capsys.readouterr().err


def test_render_and_gradient_account_for_the_step():
  """The step is render + loss gradient + AdamW + EMA; the optimizer's FLOPs are a few per parameter."""
  out = prior_train_step.main(["--batch", "12", "--channels", "32,32", "--repeats", "1"])
  assert set(out) == {"render", "grad", "step"}
  for part in out.values():
    assert part["ms"] > 0 and part["compile_s"] > 0 and part["gflop"] > 0
  assert out["step"]["gflop"] == pytest.approx(out["render"]["gflop"] + out["grad"]["gflop"], rel=0.02)
  assert out["step"]["gflop"] > out["grad"]["gflop"] + out["render"]["gflop"]  # the update's own FLOPs
