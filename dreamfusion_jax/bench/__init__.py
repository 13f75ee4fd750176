"""Speed benchmark of the training step and its pieces; run it as `python -m dreamfusion_jax.bench`.

measure: XLA's FLOP/memory counts, timed calls, `build` and the full step (`bench_step`);
pieces: the step cut into separately jitted render / encode / distill / unet / update programs;
report: `run` (the whole benchmark → a JSON-ready dict), the PyTorch reference, `format_report`;
__main__: the flags (see its docstring for usage, timing method and FLOP accounting).
"""

from dreamfusion_jax.bench.measure import bench_step
from dreamfusion_jax.bench.measure import build
from dreamfusion_jax.bench.measure import peak_memory
from dreamfusion_jax.bench.measure import PEAK_TFLOPS
from dreamfusion_jax.bench.measure import prepare_config
from dreamfusion_jax.bench.measure import Setup
from dreamfusion_jax.bench.measure import time_calls
from dreamfusion_jax.bench.measure import TIMING_METHOD
from dreamfusion_jax.bench.measure import xla_flops
from dreamfusion_jax.bench.measure import xla_memory
from dreamfusion_jax.bench.pieces import bench_pieces
from dreamfusion_jax.bench.pieces import piece_programs
from dreamfusion_jax.bench.pieces import PIECES
from dreamfusion_jax.bench.pieces import SUMMED
from dreamfusion_jax.bench.report import format_report
from dreamfusion_jax.bench.report import load_torch_reference
from dreamfusion_jax.bench.report import ROOT
from dreamfusion_jax.bench.report import run
from dreamfusion_jax.bench.report import run_torch_reference
from dreamfusion_jax.bench.report import TORCH_REFERENCE
