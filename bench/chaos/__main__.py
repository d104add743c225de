"""python -m bench.chaos: see the package docstring."""

from bench.chaos.run import main

main()
