"""What the cache's tests share: dating files back, and a CLI start that reports its imports."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["probe", "settle"]


def settle(*paths: Path) -> None:
    """Date files back 10 s, so a manifest or record that depends on them is not "racy"
    (see ``RACY_NS``)."""
    past = time.time() - 10
    for path in paths:
        for directory, _dirs, files in os.walk(path):
            for name in files:
                os.utime(os.path.join(directory, name), (past, past))
            os.utime(directory, (past, past))


def probe(costly: Sequence[str]) -> str:
    """``python -c`` source that runs the CLI in-process (its arguments from ``sys.argv``)
    and reports on stderr, after ``IMPORTED ``, which of the ``costly`` modules it imported."""
    return (
        "import json, sys\n"
        "from localagent.cli import main\n"
        "main(sys.argv[1:], standalone_mode=False)\n"
        f"costly = {json.dumps(list(costly))}\n"
        "found = [name for name in costly if name in sys.modules]\n"
        'print("IMPORTED " + json.dumps(found), file=sys.stderr)\n'
    )
