"""`python -m openfdi` runs the command line."""

from openfdi.cli import main

main()
