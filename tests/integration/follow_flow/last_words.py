"""A flow that says most of what it has to say in its very last moment, as housekeeping's report
does: the lines reach the server after the run is final (flushed as its process exits)."""

from __future__ import annotations

from prefect import flow, get_run_logger


@flow(name="last-words")
def last_words(lines: int = 300) -> int:
    """Log ``lines`` numbered lines, all at the end."""
    logger = get_run_logger()
    for number in range(lines):
        logger.info("last words %04d", number)
    return lines
