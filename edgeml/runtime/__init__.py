"""Running exported artifacts on the host and checking what they compute.

* ``runners``: opens an artifact distrustfully (its sha256 against the manifest before native code
  reads a byte; ExecuTorch programs with ``InternalConsistency``, ONNX models through
  ``onnx.checker``) and runs it in ExecuTorch's Python runtime (.pte) or ONNX Runtime (.onnx);
* ``verify``: parity with the PyTorch reference rebuilt from the manifest, streamed over a folder
  of images, judged against the quantization scheme's threshold (``edgeml verify``);
* ``metrics``: SQNR, cosine similarity and top-1 agreement;
* ``bundled``: ExecuTorch bundled programs (``.bpte``: the program with sample inputs and reference
  outputs, ``export --bundle`` / ``verify X.bpte``);
* ``device_outputs``: the file of output tensors a phone writes, for ``verify --device-outputs``.
"""
