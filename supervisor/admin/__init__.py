"""supervisor/admin."""
