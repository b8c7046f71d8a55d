"""Pure model of openfdi: ids, task and run states, schedules. No I/O, no framework."""
