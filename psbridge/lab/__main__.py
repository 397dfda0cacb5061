"""``python -m psbridge.lab``: the lab's commands, including ``serve`` (what ``lab up`` spawns)."""

from psbridge.lab.cli import app

if __name__ == "__main__":
    app(prog_name="python -m psbridge.lab")
