"""Statistics for parity: a leaf library (imports nothing else from parity except errors).

Its public surface is its four submodules, each one concept, imported by name so that the monitor's
pure-Python sequential tests never pull in scipy:

- ``parity.stats.twosample``: two-sample tests over completions and next-token distributions, with
  permutation p-values and named result objects.
- ``parity.stats.power``: power analysis (budget needed for an effect; minimum detectable effect at a budget).
- ``parity.stats.sequential``: sequential change tests (CUSUM) for per-segment rates, with a false-alarm rate
  controlled across many segments.
- ``parity.stats.calibration``: per-token support-violation and PIT calibration tests against a reference sampler.

>>> from parity.stats import sequential
>>> sequential.BernoulliCUSUM.__name__
'BernoulliCUSUM'
"""

__all__ = ["calibration", "power", "sequential", "twosample"]
