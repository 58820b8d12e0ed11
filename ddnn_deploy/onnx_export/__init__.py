"""Export: per-depth ONNX graphs, the selector graph, onnxsim in a child process, parity, manifest.

The entry point is ``ddnn_deploy.export`` (``onnx_export.api.export``). This package imports nothing
on import, so its torch-free ``settings`` (exporters, opset, tolerances) can be read without torch.
"""
