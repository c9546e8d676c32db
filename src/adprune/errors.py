"""The one exception type whose message is meant for the user, not for a traceback."""


class AdpruneError(ValueError):
    """A problem with the user's input or environment.

    The message says what is wrong and how to fix it in one line; the CLI prints it and exits with 2.
    """
