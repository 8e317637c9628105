"""x3kd cache_schema."""
