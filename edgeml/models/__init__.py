"""The edgeml model zoo: ``create_model`` / ``list_models`` and the families' modules."""
from edgeml.models._registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelConfig,
    count_params,
    create_model,
    example_input,
    get_model_config,
    list_models,
    register_model,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelConfig",
    "count_params",
    "create_model",
    "example_input",
    "get_model_config",
    "list_models",
    "register_model",
]
