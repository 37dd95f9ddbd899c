"""miner: finds service outages in what people post."""

__version__ = "0.1.0"
