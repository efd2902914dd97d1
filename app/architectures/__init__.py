"""The supported architectures, read from the catalogue (GET /v1/architectures)."""
