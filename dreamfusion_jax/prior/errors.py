"""The error a missing or incomplete prior raises, in a module light enough for every entry point.

`refusals` (imported by every command-line entry point) catches PriorNotFoundError; defining it here
rather than in prior/checkpoint.py keeps diffusers out of that import, so that a command that refuses
its input does so before the seconds diffusers takes to import.
"""


HOW_TO_GET = """How to get Stable Diffusion 2.1-base (about 5 GB of float32 safetensors):
  huggingface-cli download stabilityai/stable-diffusion-2-1-base --local-dir DIR --include "*.json" \\
      "tokenizer/*.txt" "text_encoder/model.safetensors" "*/diffusion_pytorch_model.safetensors"
then pass --config.prior.model=DIR (any Stable Diffusion 1.x/2.x repo in the diffusers layout works the
same way). safetensors weights load without PyTorch; Flax msgpack weights live on the "flax"/"bf16"
revision of some hub repos; .bin pickles need --config.prior.from_pt=True and torch.
Offline, a randomly initialised prior of the same architecture (for timing and tests) is written by
  dreamfusion_jax.prior.random_init.save_prior(*build_random_prior("sd21-base"), DIR)."""


class PriorNotFoundError(ValueError):
  """The prior's folder or hub id lacks components; the message says which and how to get them."""
