"""Export's choices and defaults, torch-free (the CLI and scripts read them without importing torch)."""

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-4  # worst |onnx - torch| relative to the largest |logit|
FP16_TOLERANCE = 1e-2  # FP16 graphs: half precision keeps about 3 significant digits
INPUT_NAME, OUTPUT_NAME = "input", "logits"
