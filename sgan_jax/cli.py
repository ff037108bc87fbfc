"""absl entry-point helpers: bad input ends in one line on stderr and a non-zero exit."""

import logging as py_logging
import os
import sys

from absl import flags, logging

from sgan_jax.errors import ConfigError, NonFiniteError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3


def _fail(message: str, code: int):
    first_line = (str(message).strip().splitlines() or ["unknown error"])[0]
    print(f"error: {first_line}", file=sys.stderr, flush=True)
    sys.exit(code)


class _DropLibraryInfo(py_logging.Filter):
    """Keeps our own INFO lines (progress) and every library's warnings; drops the libraries'
    INFO chatter (orbax logs each checkpoint step in a dozen lines)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or _PACKAGE_DIR in record.pathname


def quiet_library_logs() -> None:
    logging.get_absl_handler().addFilter(_DropLibraryInfo())


def parse_flags(argv: list[str]) -> list[str]:
    """`flags_parser` for `app.run`: a bad flag or config override is one line, no traceback."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except (KeyError, AttributeError, TypeError, ValueError) as error:
        # ml_collections raises these for an unknown or mistyped --config.KEY.
        _fail(f"{type(error).__name__}: {error}", EXIT_BAD_INPUT)


def run_cleanly(fn):
    """Calls fn(); known failures end the process with a one-line message."""
    try:
        return fn()
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except NonFiniteError as error:
        _fail(str(error), EXIT_NON_FINITE)
