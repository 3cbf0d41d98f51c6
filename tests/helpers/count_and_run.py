"""count_and_run.py LOG COMMAND...: append a line to LOG, then exec COMMAND (tests count restarts)."""

import os
import sys

with open(sys.argv[1], "a", encoding="utf-8") as log:
    log.write(" ".join(sys.argv[2:]) + "\n")
os.execv(sys.argv[2], sys.argv[2:])
