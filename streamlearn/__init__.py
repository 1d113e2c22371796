"""streamlearn: continual and online learning on event streams.

Kafka topics and logged streams in, online learners on every event, Parquet
checkpoints out. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
