"""The one exception type whose message is meant for the user, not for a traceback."""


class AdpruneError(ValueError):
    """A problem with the user's input or environment.

    The message says what is wrong and how to fix it in one line; the CLI prints it and exits with 2.
    """


def summarize_exception(exc: BaseException, limit: int = 160) -> str:
    """`Type: first line of the message`, cut to `limit` characters, for one-line error messages."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."
