"""x3kd detection."""
