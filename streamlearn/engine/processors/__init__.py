"""One processor per learner family: how its events become learner calls and outputs."""
