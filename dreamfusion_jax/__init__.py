"""dreamfusion_jax: DreamFusion (SDS), SJC and ISM text-to-3D in JAX/Flax."""

__version__ = "0.1.0"
