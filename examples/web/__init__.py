"""The SSE demo: ``python -m examples.web.app`` from the repository root."""
