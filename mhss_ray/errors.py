"""User-facing errors: one line that names the file, row or YAML key, exit code 2, no traceback."""

# The longest error line a user sees (the program name in front adds ~20): whatever a message quotes
# (a value, a key list, a path) is cut, never a screenful.
MAX_MESSAGE = 270


class UserError(Exception):
    """A mistake in the user's input (config, data, command line). The CLI prints it on one line."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep it on one line, and short, whatever the caller passed in.
        text = " ".join(str(message).split())
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        super().__init__(text)


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite (often a learning rate far too high)."""

    exit_code = 1
