"""``python -m carve.depth [options]``: train a monocular depth model (also under ``torchrun``)."""
from carve.depth.training import main

if __name__ == "__main__":
    raise SystemExit(main())
