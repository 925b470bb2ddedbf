"""``python -m carve``: the command line."""
from carve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
