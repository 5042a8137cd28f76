"""srlab: a teaching lab for GAN-based image super-resolution.

One module per idea: `models`, `losses`, `metrics`, `resize`, `images`, `data`,
`evaluate`, `viz`. Notebooks import from here; they never redefine a model or a loss.
"""

__version__ = "0.1.0"
