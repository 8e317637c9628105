"""x3kd student."""
