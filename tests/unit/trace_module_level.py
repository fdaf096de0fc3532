"""Module-level code for the tracer tests (imported, and traced, while tracing)."""

VALUES = [1, 2]
VALUES.append(3)
RESULT = sum(VALUES)
