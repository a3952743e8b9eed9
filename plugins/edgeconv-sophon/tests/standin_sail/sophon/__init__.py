"""STAND-IN for Sophgo's ``sophon`` package, used only by edgeconv-sophon's board-half tests (see ``sail.py``)."""
