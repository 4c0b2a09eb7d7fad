"""Running releases: the interface services use, and its implementations."""
