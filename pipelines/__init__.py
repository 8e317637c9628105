"""x3kd pipelines."""
