"""The embedded world: procedural shapes, the shipped pixel prior and its judge."""
