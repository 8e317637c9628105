"""Teachers: the LiDAR and image networks run once at export."""
