"""Prefect flows of the taxi trip-duration platform."""
