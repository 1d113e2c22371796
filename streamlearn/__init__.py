"""streamlearn: continual and online learning on event streams.

Kafka topics and logged streams in, online learners on every event, Parquet
checkpoints out. See README.md and docs/architecture.md.
"""

__version__ = "0.1.0"

__all__ = ["OnlineModel", "load_learner"]


def load_learner(location, learner_class=None):
    """The learner of a checkpoint file or directory; see :func:`streamlearn.api.load_learner`."""
    from streamlearn.api import load_learner as _load

    return _load(location, learner_class)


def __getattr__(name):
    # Imported on first use: ``import streamlearn`` stays light for the CLI.
    if name == "OnlineModel":
        from streamlearn.online import OnlineModel

        return OnlineModel
    raise AttributeError(f"module 'streamlearn' has no attribute {name!r}")
