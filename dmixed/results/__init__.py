"""Fitted results: estimates and inference, prediction, the printed summary."""

from .results import MixedLMResults

__all__ = ["MixedLMResults"]
