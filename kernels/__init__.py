"""edgeml.kernels: custom ops (selective scan, linear attention) with their references."""
