"""The one exception type a user of ``lama`` can cause (bad file, wrong size, missing weights)."""


class LamaError(Exception):
    """A problem with the user's input or files; the message says what to do about it."""


class MetricWeightsError(LamaError):
    """Metric weights are missing, broken or not the trained ones; the message says what to do."""
