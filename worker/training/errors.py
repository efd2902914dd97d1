"""Exceptions the training engine raises on purpose."""


class TrainingCancelled(Exception):
    """should_stop() asked the run to end; nothing is saved."""
