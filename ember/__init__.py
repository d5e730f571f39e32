"""ember: remote Python objects over a small, secure plugin kernel."""
