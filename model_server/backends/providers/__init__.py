"""Adapters for external inference providers, one module per service."""
