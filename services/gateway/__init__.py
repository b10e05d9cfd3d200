"""The Prefect gateway: per-person accounts and roles in front of Prefect's API and UI."""
