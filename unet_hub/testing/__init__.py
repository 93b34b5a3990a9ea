"""Test helpers for unet-hub (a local, Hub-compatible HTTP server: see `hub_server`)."""
