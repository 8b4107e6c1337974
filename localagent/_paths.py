"""Where the user's configuration lives: the config directory and its ``config.toml``.

Standard library only (``platformdirs`` is imported when first needed): both
the start-up code (:mod:`._bootstrap`, which must stay cheap) and the settings
loader (:mod:`._config`) find the file here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pathlib costs more than the rest of this module: paths here are str
    from pathlib import Path

__all__ = ["CONFIG_DIR_VARIABLE", "CONFIG_FILE_NAME", "config_dir", "config_path"]

#: Names a config directory that replaces the platform's.
CONFIG_DIR_VARIABLE = "LOCALAGENT_CONFIG_DIR"
CONFIG_FILE_NAME = "config.toml"


def config_path() -> str:
    """The user config directory: ``$LOCALAGENT_CONFIG_DIR`` or the platform's."""
    override = os.environ.get(CONFIG_DIR_VARIABLE)
    if override:
        return os.path.expanduser(override)
    import platformdirs  # only paid for when no override is set

    return platformdirs.user_config_dir("localagent", appauthor=False)


def config_dir() -> Path:
    """:func:`config_path` as a :class:`~pathlib.Path`."""
    from pathlib import Path

    return Path(config_path())
