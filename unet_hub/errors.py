"""User-facing errors.

Every error the project raises on purpose is a ``UNetHubError``: its message is one
line that says what is wrong, where (which file, folder or argument) and what to do.
The command line and the web app show that line instead of a traceback.
"""


class UNetHubError(Exception):
    """Base class of the errors meant to be read by a user."""


class ConfigError(UNetHubError, ValueError):
    """A model configuration (constructor arguments or ``config.json``) is invalid."""


class ModelLoadError(UNetHubError):
    """A saved model (folder or Hub repo) cannot be loaded."""


class ImageReadError(UNetHubError):
    """An image file cannot be read or converted."""


class DataError(UNetHubError):
    """A training or evaluation data folder is unusable."""


class DownloadError(UNetHubError):
    """A data set file cannot be downloaded, or what was downloaded is not what it should be."""
