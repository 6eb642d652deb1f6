"""Installer exceptions; each message says what to do about it."""


class InstallerError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class BundleError(InstallerError):
    """Building a bundle failed."""


class IntegrityError(InstallerError):
    """A bundle or archive does not match its checksums; nothing was installed."""


class SelfTestError(InstallerError):
    """The installed server did not answer as it should."""
