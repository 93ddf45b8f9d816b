"""Shared test helpers: offline rootfs builders, OCI spec defaults, runtime drivers."""
