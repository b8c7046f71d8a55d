"""Change data capture readers and the apply step of composite tasks (connectors layer)."""
