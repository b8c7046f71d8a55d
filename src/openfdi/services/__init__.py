"""Use cases: one function per FDI operation; each owns its transaction."""
