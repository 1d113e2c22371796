"""Online learners. Nothing here knows about Kafka, files or the engine.

Import a learner from its module, e.g. ``from streamlearn.learners.lame import LAME``.
"""
