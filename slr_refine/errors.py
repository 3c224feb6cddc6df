"""The engine's one error type for a bad setting: it names the argument, so that a caller that
reads its settings from elsewhere (the plugin's config) can name its own key instead."""

__all__ = ["InvalidArgument"]


class InvalidArgument(ValueError):
    """``argument`` ``problem``, e.g. ``InvalidArgument("alpha", "must lie in [0, 1], got 2")``."""

    def __init__(self, argument: str, problem: str):
        super().__init__(f"{argument} {problem}")
        self.argument, self.problem = argument, problem
