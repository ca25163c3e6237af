"""One module per Stripe resource (or a small cohesive group), each a class given the shared `Store` and the
resources it works with; `engine.py` wires them (README: *Structure*)."""
