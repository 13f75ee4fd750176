"""Shared test set-up: 8 fake CPU devices so sharded code paths run on any machine."""

import os

# Must happen before jax initialises its backends. Single-device code is unaffected: arrays live on
# device 0 unless a sharding says otherwise.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
