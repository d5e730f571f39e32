"""Server modules that the end-to-end tests run as separate processes."""
