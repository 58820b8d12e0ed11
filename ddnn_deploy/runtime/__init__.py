"""Run a DDNN on the device and switch its depth: ``DepthRuntime`` (predict), the depth policies (fixed,
budget, the adaptive SLO controller) and the HTTP server (``server.py``, FastAPI + uvicorn). No torch."""

from .engine import DepthRuntime, Prediction
from .policy import ControllerSettings, FixedPolicy, SLOController

__all__ = ["ControllerSettings", "DepthRuntime", "FixedPolicy", "Prediction", "SLOController"]
