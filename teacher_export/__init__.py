"""x3kd teacher_export."""
