"""Where an artifact parts from its source (docs/debug.md): ``edgeconv debug layers`` (layer by layer, every target
whose runtime exposes its tensors), ``edgeconv debug reduce`` (the smallest subgraph that still fails, as ONNX) and
the trace-based ranking ``--precision auto``'s layer fallback can use (``rank_by_trace``).

A strategy over one conversion, in the layers next to ``edgeconv.auto`` (docs/architecture.md): it uses the
pipeline's public stages, the manifest, the verification's metric table and the records; never the CLI or the API.
Nothing heavy is imported here.
"""
