"""Fitting: the profiled objective over summed contributions, starting values, optimizer.

- :mod:`~dmixed.fit.objective`: profiled log-likelihood, score and Hessian (DESIGN.md §3–5).
- :mod:`~dmixed.fit.start`: moment starting values (MIVQUE0).
- :mod:`~dmixed.fit.optimize`: Newton steps, the scipy loop, boundary handling, polish.
- :mod:`~dmixed.fit.profiled`: :class:`ProfiledObjective`, the profiled ℓ and its score
  at the optimizer's packed parameters (one engine round trip, cached).
- :mod:`~dmixed.fit.options`: the options ``method=`` and ``free=``, checked.
- :mod:`~dmixed.fit.summary`: :class:`OptSummary`, the record of one optimization
  (settings and tolerances, start, outcome, fit log).
- :mod:`~dmixed.fit.params`: :class:`MixedLMParams`, statsmodels' parameter point and packings.
- :mod:`~dmixed.fit.likelihood`: ℓ, score and Hessian at any point in the model's own
  coordinates; :mod:`~dmixed.fit.model_methods`: statsmodels' model API on them
  (``MixedLM.loglike``, ``score``, ``score_full``, ``score_sqrt``, ``hessian``,
  ``get_fe_params``).
- :mod:`~dmixed.fit.model_statistics`: ``MixedLM.statistics``, the data pass and its cache
  (``MixedLM.fit_statistics``, the statistics a fit uses).
- :mod:`~dmixed.fit.steps`: the steps of ``MixedLM.fit`` (its options checked, the
  optimizer's start, the profiled objective of the statistics).
- :mod:`~dmixed.fit.fit_warnings`: the warnings of a fit's outcome (convergence, boundary,
  precision).
"""
