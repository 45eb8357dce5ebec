"""Performance scripts; run them as modules from the project root: python -m benchmarks.<name>."""
