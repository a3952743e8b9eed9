"""``python -m edgeconv.matrix matrix SPEC -o OUT`` / ``... fleet ...``: used as the Ray job entry point."""

from .commands import main

main()
