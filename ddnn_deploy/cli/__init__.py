"""The command line: ``ddnn-deploy`` (also ``python -m ddnn_deploy``)."""

from .main import cli, main

__all__ = ["cli", "main"]
