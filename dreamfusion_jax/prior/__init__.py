"""The frozen text-to-image diffusion prior: loading, noise schedule, prompt embeddings."""
