"""Score-distillation losses (SDS, SJC, ISM): one pure function each, one signature.

  loss, aux = LOSSES[config.distill](config, prior, prior_params, x, (cond, uncond), key, step)

x is the render in the prior's model space [B, h, w, C]; ∂loss/∂x is the method's gradient / B.
The submodules keep their names (`from dreamfusion_jax.distill import sjc` is the module, with
`sjc.sjc`, `sjc.emptiness_loss`, `sjc.center_depth_loss`).
"""

from dreamfusion_jax.distill import ism
from dreamfusion_jax.distill import sds
from dreamfusion_jax.distill import sjc

LOSSES = {"sds": sds.sds, "sjc": sjc.sjc, "ism": ism.ism}
