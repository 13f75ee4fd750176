"""Outputs a person looks at: turntable videos, image grids, meshes."""
