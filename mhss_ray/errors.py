"""User-facing errors: one line that names the file, row or YAML key, exit code 2, no traceback."""


class UserError(Exception):
    """A mistake in the user's input (config, data, command line). The CLI prints it on one line."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep it on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class TrainingDiverged(Exception):
    """The training loss became NaN or infinite (often a learning rate far too high)."""

    exit_code = 1
