"""supervisor/config."""
