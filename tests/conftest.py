"""Shared fixtures. Building a Keras model costs seconds, so each distinct spec is built once."""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def built(spec):
    """The Keras model of ``spec`` (a frozen, hashable ResNetSpec), built once per test session."""
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import build_model

    keras.utils.set_random_seed(0)
    return build_model(spec)


@pytest.fixture(scope="session")
def build():
    return built
