"""Scripts the end-to-end tests run inside containers (mounted read-only, run with python)."""
