"""Applications used by the integration tests, loaded by import path like any app."""
