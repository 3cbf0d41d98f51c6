"""hold_restart.py MODE GATE COMMAND...: run COMMAND only once the file GATE exists (tests stop a run mid-step).

MODE ``before``: block until GATE exists, then exec COMMAND; when GATE.cancel appears first, exit 3
without running COMMAND (the harness was killed: its restart stays "in flight" and never happens).

MODE ``after``: exit 0 at once (the restart step is "done"), and run COMMAND in the background once
GATE exists: until then the service keeps answering the old version, so the harness waits for it.
"""

import os
import sys
import time

mode, gate, command = sys.argv[1], sys.argv[2], sys.argv[3:]
cancel = gate + ".cancel"
deadline = time.monotonic() + 120

if mode == "after":
    if os.fork() != 0:
        sys.exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
while True:
    if (mode == "before" and os.path.exists(cancel)) or time.monotonic() > deadline:
        sys.exit(3)
    if os.path.exists(gate):
        break
    time.sleep(0.02)
os.execv(command[0], command)
