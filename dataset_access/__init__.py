"""x3kd dataset_access."""
