"""What the file connectors (FILE, FTP) share (layer: connectors): a task end's file options,
the CSV / JSON lines / Parquet formats, the stores they live in, reading and writing."""

import os

# pyarrow's default allocator (mimalloc) keeps the pages a run frees for later reuse: a
# 1,000,000-row PostgreSQL -> Parquet run (bench/files.py) grew the server by 51 MB of
# anonymous memory with it, by 17 MB with malloc, which gives back what openfdi.memory maps on
# its own (blocks of 1 MiB and more) when freed and trims the rest after each run (same speed).
# libarrow reads this when its default pool is first used, so it is set before this package
# imports pyarrow (the only one in openfdi that does); an operator's own choice wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
