"""Airflow 2.x DAG: a nightly ``dmixed fit --job ...`` with exit-status-aware retries.

Put this file in the DAGs folder of a deployment whose workers have dmixed installed
(or set ``DMIXED_BIN`` to the command, e.g. ``/opt/dmixed/venv/bin/dmixed``).  The job
file's relative paths are resolved from its own directory (the task runs there).

dmixed's exit status decides what Airflow does:

- 0: success; the results directory's path is the task's XCom value;
- 5 (cluster unreachable): a transient failure, retried (``retries`` below);
- 1 (a bug in dmixed), 2 (bad configuration), 3 (unreadable data), 4 (not
  converged): failed at once, no retries — running the same job again would fail the
  same way.

``max_active_runs=1`` keeps two runs of the DAG from writing the same output at the
same time.  Without Airflow installed this module defines no DAG (``dag`` is None), so
it can be imported or compiled anywhere.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from datetime import timedelta

JOB_FILE = os.environ.get("DMIXED_JOB", "/srv/analytics/jobs/scores.yaml")
DMIXED_BIN = os.environ.get("DMIXED_BIN", "dmixed")
RETRYABLE = {5}  # cluster unreachable

try:
    import pendulum
    from airflow.decorators import dag as dag_decorator
    from airflow.decorators import task
    from airflow.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow is not installed: nothing to define
    dag = None
else:

    @dag_decorator(
        dag_id="dmixed_nightly_fit",
        schedule="15 2 * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={
            "owner": "analytics",
            "retries": 3,
            "retry_delay": timedelta(minutes=10),
            "retry_exponential_backoff": True,
        },
        tags=["dmixed", "mixed-models"],
        doc_md=__doc__,
    )
    def dmixed_nightly_fit():
        @task(task_id="dmixed_fit", execution_timeout=timedelta(hours=4))
        def dmixed_fit(job_file: str = JOB_FILE) -> str:
            cmd = [*shlex.split(DMIXED_BIN), "fit", "--job", os.path.basename(job_file)]
            # progress and errors (stderr) stream into the task log; stdout is the path
            proc = subprocess.run(
                cmd,
                cwd=os.path.dirname(os.path.abspath(job_file)),
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                return proc.stdout.strip()
            message = f"{shlex.join(cmd)} exited with status {proc.returncode}"
            if proc.returncode in RETRYABLE:
                raise AirflowException(message)  # retried
            raise AirflowFailException(message)  # fails without retrying

        dmixed_fit()

    dag = dmixed_nightly_fit()
