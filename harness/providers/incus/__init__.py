"""Incus system containers: the provider and its client (this host or an Incus cluster)."""
