"""The old home of the request contract, kept one release for code not yet moved: use `model_serving.requests`
(models, bounds) and `model_serving.failures` (how a refused input is worded)."""

from model_serving.failures import PATTERN_RULES, input_error, validated
from model_serving.requests import *  # noqa: F403
from model_serving.requests import Request, flat_schema

__all__ = ["PATTERN_RULES", "Request", "flat_schema", "input_error", "validated"]
