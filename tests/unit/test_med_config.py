"""The medical task's config: the model names it accepts are the model table's, and its value
checks name the key."""

from __future__ import annotations

import typing

import pytest

from medtrain.config import MedicalClassificationConfig, MedModelConfig, ModelName
from medtrain.models import MODELS
from shards.stream_config import StreamConfig


def test_the_config_accepts_exactly_the_models_of_the_table():
    assert set(typing.get_args(ModelName)) == set(MODELS)


@pytest.mark.parametrize(("section", "message"), [
    ({"stream": StreamConfig(shards="s", mode="pk")}, "classification reads stream.mode: shuffle"),
    ({"label_smoothing": 1.0}, "label_smoothing must be in [0, 1)"),
    ({"overlays": -1}, "bootstrap, overlays and slide_mosaics at least 0"),
    ({"model": "patch"}, None),
])
def test_value_checks(section, message):
    if message is None:  # a model section's own checks
        with pytest.raises(ValueError, match="patch_size must be 0 or a power of 2 up to 16, got 12"):
            MedModelConfig(patch_size=12)
        return
    fields = {"name": "medical_classification", "stream": StreamConfig(shards="s", mode="shuffle"), **section}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        MedicalClassificationConfig(**fields)
