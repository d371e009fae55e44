"""The exception a user of ``evaluation`` can cause (bad folders, files or options); one base for the package."""


class EvaluationError(Exception):
    """A problem with the user's folders, files or options; the message says what to do."""
