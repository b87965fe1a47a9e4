"""parity's benchmarks: figures, never timed assertions.

Each ``bench_*.py`` module has a ``main()`` that measures one topic (median of repeated runs, the competitor
measured in the same process) and writes ``benchmarks/results/<topic>.md``. ``python -m benchmarks`` runs them
all (or the ones named) and assembles ``benchmarks/RESULTS.md``.
"""
