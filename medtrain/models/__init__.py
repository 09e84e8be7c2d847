"""The medical track's models: ``build_model(name, num_classes, flavour, pretrained_path, **options)``."""

from medtrain.models.base import MedicalModel, to_three_channels
from medtrain.models.table import FLAVOURS, MODELS, build_model, model_options

__all__ = ["FLAVOURS", "MODELS", "MedicalModel", "build_model", "model_options", "to_three_channels"]
