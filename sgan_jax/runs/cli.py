"""absl entry-point helpers: bad input ends in one line on stderr and a non-zero exit."""

import logging as py_logging
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from sgan_jax.runs import errors
from sgan_jax.runs.errors import CheckpointError, ConfigError, NonFiniteError, Preempted, RunsFailed

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
EXIT_RUNS_FAILED = 1  # a sweep's runs in separate processes failed; each has its train.log
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_CHECKPOINT = 4  # checkpoints exist and none restores; nothing was changed
EXIT_NO_SPACE = 5  # the storage is full or over quota; free space, and the same command resumes
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving; the same command resumes


def _fail(message: str, code: int, prefix: str = "error: "):
    first_line = (str(message).strip().splitlines() or ["unknown error"])[0]
    print(f"{prefix}{first_line}", file=sys.stderr, flush=True)
    sys.exit(code)


class _DropLibraryInfo(py_logging.Filter):
    """Keeps our own INFO lines (progress) and every library's warnings; drops the libraries'
    INFO chatter (orbax logs each checkpoint step in a dozen lines)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or _PACKAGE_DIR in record.pathname


def quiet_library_logs() -> None:
    logging.get_absl_handler().addFilter(_DropLibraryInfo())


def define_distributed_flags() -> None:
    """Flags for runs over several processes (hosts); see `sharding.initialize_distributed`."""
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first.")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (or detected).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (or detected).")
    flags.DEFINE_integer("process_id", None, "This process's index (or detected).")


def maybe_initialize_distributed() -> None:
    """Before jax starts: the config's XLA flags, then the processes' rendezvous if asked for."""
    if "config" in flags.FLAGS:
        from sgan_jax.runs import provenance

        run_cleanly(lambda: provenance.apply_xla_settings(flags.FLAGS.config))
    if flags.FLAGS.distributed:
        from sgan_jax.runs import sharding

        sharding.initialize_distributed(
            flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id
        )


def define_config_flag(default_path: str) -> None:
    """`--config` (a locked ml_collections config file) and its `--config.KEY=VALUE` overrides.

    config_flags reads the command line as soon as the flag is defined, so an unknown key fails
    here, before `app.run`.
    """
    try:
        config_flags.DEFINE_config_file("config", default_path, "Config file.", lock_config=True)
    except (AttributeError, KeyError) as error:
        _fail_unknown_key(error)
    except Exception as error:  # noqa: BLE001 - a config file that does not load
        _fail(f"config: {type(error).__name__}: {error}", EXIT_BAD_INPUT)


def _fail_unknown_key(error: Exception):
    """ml_collections' error for an unknown --config.KEY (an AttributeError or KeyError
    whose message is the key, quoted), as one line."""
    key = str(error).strip("\"'")
    _fail(f"config.{key}: unknown config key", EXIT_BAD_INPUT)


def parse_flags(argv: list[str]) -> list[str]:
    """`flags_parser` for `app.run`: a bad flag or config override is one line, no traceback."""
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except (KeyError, AttributeError) as error:
        # An unknown --config.KEY after --config=FILE: the file's overrides parse here.
        _fail_unknown_key(error)
    except (TypeError, ValueError) as error:  # a mistyped --config.KEY
        _fail(f"{type(error).__name__}: {error}", EXIT_BAD_INPUT)
    if "config" in flags.FLAGS:
        try:
            flags.FLAGS.config.keys()  # config_flags reports a file that did not load on use
        except OSError as error:
            reason = str(error).strip().splitlines()[-1].strip()
            _fail(f"config: cannot load the config file: {reason}", EXIT_BAD_INPUT)
    return remaining


def run_cleanly(fn):
    """Calls fn(); known failures end the process with a one-line message."""
    try:
        return fn()
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except NonFiniteError as error:
        _fail(str(error), EXIT_NON_FINITE)
    except CheckpointError as error:
        _fail(str(error), EXIT_CHECKPOINT)
    except RunsFailed as error:
        _fail(str(error), EXIT_RUNS_FAILED)
    except Preempted as error:
        _fail(str(error), EXIT_PREEMPTED, prefix="")
    except errors.NoSpace as error:
        _fail(str(error), EXIT_NO_SPACE)
    except Exception as error:
        found = errors.no_space(error)  # a sweep's own files, say
        if found is None:
            raise
        reason, where = found
        place = f": {where}" if where else ""
        _fail(f"{reason}{place}; free some, then run the same command", EXIT_NO_SPACE)
