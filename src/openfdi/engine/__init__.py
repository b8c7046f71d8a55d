"""The engine: runs task executions (read, map, write, commit, checkpoint) off the event loop."""
