"""Thread CPU time of refusing a column of numbers read as text (one level per row).

Reads /tmp/s54/nu11/pq5: two Parquet files, ``x`` text in one and float64 in the other.
"""

import time
import warnings

import pandas as pd

import dmixed

warnings.simplefilter("ignore")
data = pd.read_parquet("/tmp/s54/nu11/pq5")
start = time.thread_time()
try:
    dmixed.mixedlm("y ~ x", data, groups="g")
except Exception as e:
    print(type(e).__name__, str(e)[:160])
print("thread_s", round(time.thread_time() - start, 2))
