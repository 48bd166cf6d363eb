"""``python -m plume_capture``: same as the ``plume-nav-capture`` command."""
from plume_capture.cli.capture import main

if __name__ == "__main__":
    raise SystemExit(main())
