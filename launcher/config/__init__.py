"""Job configs: strict YAML loading into typed dataclasses, and the job schema."""
