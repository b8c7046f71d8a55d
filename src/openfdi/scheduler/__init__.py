"""The scheduler: turns the plans of started TIMING tasks into due runs (architecture.md 2).

`Planner` implements the supervisor's `FirePlanner` seam; `plans` reads a stored plan the way
the planner fires it, so what the API shows as `next_fire_times` is what fires.
"""
