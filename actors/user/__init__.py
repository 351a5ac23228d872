"""actors/user."""
