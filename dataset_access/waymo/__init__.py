"""Waymo Open Dataset v2 (Parquet) without TensorFlow: schema, reader, range images, samples, metrics."""
