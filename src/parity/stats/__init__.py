"""Statistics for parity: a leaf library (imports nothing else from parity except errors).

Public submodules, each one concept:

- ``parity.stats.twosample``: two-sample tests over completions and next-token distributions, with
  permutation p-values and named result objects.
- ``parity.stats.power``: power analysis (budget needed for an effect; minimum detectable effect at a budget).
- ``parity.stats.sequential``: sequential change detectors for per-segment rates, with a false-alarm rate
  controlled across many segments.
"""
