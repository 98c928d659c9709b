"""Quickstart: fit a linear mixed model with dmixed.

Simulates 2,000 groups of 1 to 40 rows with a random intercept and a random
slope on x1, then fits the model by REML and prints a statsmodels-style summary.
"""

import numpy as np
import pandas as pd

import dmixed

rng = np.random.default_rng(12345)

# 2,000 groups of 1 to 40 rows each.
n_groups = 2000
sizes = rng.integers(1, 41, size=n_groups)
g = np.repeat(np.arange(n_groups), sizes)
n = g.size

# Three fixed-effect covariates.
x = rng.normal(size=(n, 3))

# Random intercept and random slope on x1, correlated.
cov_re = np.array([[1.0, 0.3], [0.3, 0.5]])
b = rng.multivariate_normal(np.zeros(2), cov_re, size=n_groups)

y = (
    0.5
    + x @ np.array([1.0, -0.5, 0.25])
    + b[g, 0]
    + b[g, 1] * x[:, 0]
    + rng.normal(scale=1.0, size=n)
)
df = pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "g": g})

model = dmixed.mixedlm("y ~ x1 + x2 + x3", df, groups="g", re_formula="1 + x1")
res = model.fit(reml=True)
print(res.summary())
