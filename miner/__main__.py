"""`python -m miner` is the same as the `miner` command."""

from miner.entry import main

main()
