"""Backends: what answers an inference request. ``local`` runs a model in-process
(torch, imported only there); ``providers`` calls an external service."""
