"""The ResNet family as data (:mod:`.spec`, pure Python) and its Keras builder (:mod:`.keras_model`,
host side, imported lazily so that ``resnet_edge.arch`` itself needs no TensorFlow)."""

from resnet_edge.arch.spec import (  # noqa: F401
    REGISTRY,
    Counts,
    Preprocess,
    ResNetSpec,
    count,
    get,
    list_models,
    plan,
    resolve,
    spec_from_dict,
)
