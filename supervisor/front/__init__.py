"""supervisor/front."""
