"""Classify images with an app framework's own image classifier, as an app would: MediaPipe Tasks'
``ImageClassifier`` or the TFLite Task Library's. It reads only what the model's standard metadata says
(labels, normalization), so it shows whether a ``.tflite`` drops into an app.

Run it with the Python that has the framework (neither installs beside TensorFlow 2.21 without breaking
something, so use a virtual environment of its own):

    python -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==1.2.3
    /tmp/mp/bin/python tools/app_client.py --client mediapipe model_int8.tflite --images digits_png/

    python -m venv /tmp/tl && /tmp/tl/bin/pip install tflite-support==0.4.4
    /tmp/tl/bin/python tools/app_client.py --client task-library model_int8.tflite --images digits_png/

Prints one JSON object per model: the framework and its version, and for every image (sorted by path,
searched recursively) the top class's index, name and score; or the framework's error when it refuses
the model. Needs nothing from resnet-edge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def images(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(SUFFIXES)]
    return found


def mediapipe_classifier(model: str):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=1)
    classifier = vision.ImageClassifier.create_from_options(options)

    def classify(path):
        r = classifier.classify(mp.Image.create_from_file(path))
        return r.classifications[0].categories[0]

    return classify, classifier.close, f"mediapipe {mp.__version__}"


def task_library_classifier(model: str):
    from importlib.metadata import version

    from tflite_support.task import core, processor, vision

    options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=model),
                                            classification_options=processor.ClassificationOptions(max_results=1))
    classifier = vision.ImageClassifier.create_from_options(options)

    def classify(path):
        r = classifier.classify(vision.TensorImage.create_from_file(path))
        return r.classifications[0].categories[0]

    return classify, lambda: None, f"tflite-support {version('tflite-support')}"


CLIENTS = {"mediapipe": mediapipe_classifier, "task-library": task_library_classifier}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client", choices=sorted(CLIENTS), required=True)
    ap.add_argument("--images", required=True, help="folder of images (searched recursively)")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args(argv)
    files = images(args.images)
    if not files:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    for model in args.models:
        out = {"model": model, "client": args.client}
        try:
            classify, close, out["framework"] = CLIENTS[args.client](model)
        except Exception as exc:  # the framework's refusal is the finding
            out["error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(out), flush=True)
            continue
        try:
            results = []
            for path in files:
                top = classify(path)
                results.append({"file": os.path.relpath(path, args.images), "index": int(top.index),
                                "name": top.category_name, "score": float(top.score)})
            out["results"] = results
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            close()
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
