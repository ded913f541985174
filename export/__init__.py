"""edgeml.export: graph passes and the lowerings to ExecuTorch .pte and ONNX."""
