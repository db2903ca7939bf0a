"""CAN layer: DBC loading, signal binding, codec, bus factory, nodes."""
