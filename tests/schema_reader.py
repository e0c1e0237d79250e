"""An independent reader, run in the MediaPipe side environment: the flatbuffer code that MediaPipe's
wheel generated from the published schemas (the model's ``schema_py_generated`` and
``metadata_schema_py_generated``) reads a ``.tflite``, and Python's zipfile its appended files.

    python tests/schema_reader.py MODEL.tflite   ->  JSON on stdout
"""

import io
import json
import sys
import zipfile

from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
from mediapipe.tasks.metadata import schema_py_generated as model_fb


def text(b):
    return b.decode("utf-8") if isinstance(b, bytes) else b


def files(fs):
    return [{"name": text(f.name), "type": f.type} for f in fs or []]


def tensor(t):
    out = {"name": text(t.name), "content_type": t.content.contentPropertiesType if t.content else None,
           "files": files(t.associatedFiles), "stats": None, "normalization": None, "color_space": None}
    if t.content and t.content.contentPropertiesType == meta_fb.ContentProperties.ImageProperties:
        out["color_space"] = t.content.contentProperties.colorSpace
    for u in t.processUnits or []:
        if u.optionsType == meta_fb.ProcessUnitOptions.NormalizationOptions:
            out["normalization"] = {"mean": list(map(float, u.options.mean)), "std": list(map(float, u.options.std))}
    if t.stats:
        out["stats"] = {"min": list(map(float, t.stats.min)), "max": list(map(float, t.stats.max))}
    return out


def main(path):
    data = open(path, "rb").read()
    model = model_fb.ModelT.InitFromObj(model_fb.Model.GetRootAsModel(data, 0))
    entries = {text(m.name): bytes(model.buffers[m.buffer].data) for m in model.metadata or []}
    report = {"entries": sorted(entries), "subgraph_inputs": len(model.subgraphs[0].inputs),
              "buffers": len(model.buffers), "ours": None, "standard": None, "zip": None}
    if "resnet_edge" in entries:
        report["ours"] = json.loads(entries["resnet_edge"])
    if "TFLITE_METADATA" in entries:
        raw = entries["TFLITE_METADATA"]
        assert meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0), "no M001 identifier"
        m = meta_fb.ModelMetadataT.InitFromObj(meta_fb.ModelMetadata.GetRootAsModelMetadata(raw, 0))
        g = m.subgraphMetadata[0]
        report["standard"] = {
            **{k: text(getattr(m, k)) for k in ("name", "description", "version", "author", "license", "minParserVersion")},
            "inputs": [tensor(t) for t in g.inputTensorMetadata or []],
            "outputs": [tensor(t) for t in g.outputTensorMetadata or []],
        }
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            report["zip"] = {n: zf.read(n).decode("utf-8") for n in zf.namelist()}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
