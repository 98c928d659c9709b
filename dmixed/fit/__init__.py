"""Fitting: the profiled objective over summed contributions, starting values, optimizer.

- :mod:`~dmixed.fit.objective`: profiled log-likelihood, score and Hessian (DESIGN.md §3–5).
- :mod:`~dmixed.fit.start`: moment starting values (MIVQUE0).
- :mod:`~dmixed.fit.optimize`: Newton steps, the scipy loop, boundary handling, polish.
- :mod:`~dmixed.fit.summary`: :class:`OptSummary`, the record of one optimization
  (settings and tolerances, start, outcome, fit log).
"""
