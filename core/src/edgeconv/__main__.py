"""``python -m edgeconv ...``: the ``edgeconv`` command (the Ray job entry point of ``fleet submit`` uses it)."""

from .cli import main

main()
