"""Progress of a data pass: events from the chains on the workers, lines on the driver.

A data pass made of a few long tasks (chains of partitions) would show nothing for
minutes; each chain reports the partitions it has read as ``distributed`` structured
events (:func:`report_partitions`), and the driver, waiting for the blocks
(:func:`wait_for`), counts them and logs a line every :data:`PROGRESS_INTERVAL` seconds.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("dmixed")

#: Topic of the events a chain sends as it reads partitions (``distributed`` structured
#: events): the driver counts them to log the progress of a data pass made of a few
#: long tasks.
PROGRESS_TOPIC = "dmixed-data-pass"
#: Seconds between progress lines during a data pass with ``progress=True``.
PROGRESS_INTERVAL = 10.0
#: Seconds between the progress events of a chain (each reports the partitions read
#: since): one event per partition would cost too much for small partitions.
PROGRESS_BATCH_SECONDS = 0.5


def report_partitions(rows: int, partitions: int = 1) -> None:
    """Tell the driver more partitions are read (only inside a distributed worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return  # not on a distributed worker: in-process, nobody to tell
    worker.log_event(PROGRESS_TOPIC, {"rows": int(rows), "partitions": int(partitions)})


class BatchedReport:
    """Partitions and rows read by one chain, sent by :func:`report_partitions` at most
    every :data:`PROGRESS_BATCH_SECONDS`."""

    def __init__(self) -> None:
        self.partitions = 0
        self.rows = 0
        self.last = time.monotonic()

    def add(self, rows: int) -> None:
        """One more partition of ``rows`` rows read; report if it is time."""
        self.partitions += 1
        self.rows += rows
        if time.monotonic() - self.last >= PROGRESS_BATCH_SECONDS:
            self.flush()
            self.last = time.monotonic()

    def flush(self) -> None:
        """Report what is not reported yet."""
        if self.partitions:
            report_partitions(self.rows, self.partitions)
        self.partitions = 0
        self.rows = 0


class _PartitionCount:
    """Partitions and rows read so far, from the events of :func:`report_partitions`."""

    def __init__(self) -> None:
        self.partitions = 0
        self.rows = 0

    def __call__(self, event) -> None:
        _, message = event
        self.partitions += int(message.get("partitions", 1))
        self.rows += int(message.get("rows", 0))


def _subscribe(client, counter: _PartitionCount) -> bool:
    try:
        client.subscribe_topic(PROGRESS_TOPIC, counter)
        return True
    except Exception:  # noqa: BLE001 - progress is a nicety; the fit goes on
        return False


def wait_for(
    client, futures, progress: bool = False, what: str = "", t0: float = 0.0, n_parts: int = 0
) -> None:
    """Wait for ``futures`` on ``client`` (not necessarily the default client).

    With ``progress``, log every :data:`PROGRESS_INTERVAL` seconds the futures done and,
    for a data pass of ``n_parts`` partitions, the partitions read so far.  Errors
    surface at the following gather.
    """
    from distributed import wait

    read = _PartitionCount()
    subscribed = bool(progress and n_parts) and _subscribe(client, read)
    try:
        with client.as_current():  # distributed.wait() works on the current client
            while True:
                try:
                    wait(futures, timeout=PROGRESS_INTERVAL if progress else None)
                    return
                except TimeoutError:
                    done = sum(f.status == "finished" for f in futures)
                    parts = (
                        f"{read.partitions}/{n_parts} partitions read ({read.rows:,} rows), "
                        if subscribed
                        else ""
                    )
                    logger.info(
                        "%s: %s%d/%d blocks done, %.0fs",
                        what,
                        parts,
                        done,
                        len(futures),
                        time.perf_counter() - t0,
                    )
    finally:
        if subscribed:
            client.unsubscribe_topic(PROGRESS_TOPIC)
