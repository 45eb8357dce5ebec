"""Queries over the matcher state: service, CLI, HTTP API and web page."""
