"""ddnn-deploy: train, export, calibrate, bench and pick depths of depth-level dynamic networks.

``import ddnn_deploy`` needs neither torch nor onnxruntime; the torch half lives in
``ddnn_deploy.models``, ``ddnn_deploy.distill`` and ``ddnn_deploy.checkpoint``.
"""

__version__ = "0.1.0"

from .errors import CheckpointError, DataError, DDNNError, MissingDependencyError, UsageError  # noqa: E402
from .spec import ARCHITECTURES, DepthConfig, arch_spec, parse_depths  # noqa: E402

__all__ = ["ARCHITECTURES", "CheckpointError", "DDNNError", "DataError", "DepthConfig",
           "MissingDependencyError", "UsageError", "__version__", "arch_spec", "parse_depths"]
