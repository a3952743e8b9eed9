"""ExecuTorch target for edgeconv (see hooks.py for what it registers, docs/targets/executorch.md)."""
