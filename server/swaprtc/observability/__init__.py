"""Operating the service: Prometheus metrics, structured logs, health and readiness."""
