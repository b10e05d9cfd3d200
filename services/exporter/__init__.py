"""The platform's own figures for Prometheus (the `platform-metrics` service)."""
