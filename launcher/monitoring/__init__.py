"""What a job tells Prometheus: per-rank metrics and their exporter."""
