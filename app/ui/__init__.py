"""The web dashboard: one HTML page at `/`, its scripts and styles under `/ui/` (no build step)."""
