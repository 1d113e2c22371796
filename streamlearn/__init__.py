"""streamlearn: continual and online learning on event streams.

Kafka topics and logged streams in, online learners on every event, Parquet
checkpoints out. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"


def load_learner(location, learner_class=None):
    """The learner of a checkpoint file or directory; see :func:`streamlearn.api.load_learner`."""
    from streamlearn.api import load_learner as _load

    return _load(location, learner_class)
