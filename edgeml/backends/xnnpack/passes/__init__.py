"""Module passes of the XNNPACK backend: rewrites that let its partitioner take the whole graph."""
