"""Which accelerator can run a ``.tflite``, and what blocks it (edge side, no TensorFlow).

* ``cpu`` (XNNPACK): measured, not guessed. The model is loaded in LiteRT with its default XNNPACK
  delegate and the execution plan is read back: one DELEGATE node means XNNPACK takes the whole graph;
  the ops left outside are listed (XNNPACK leaves an int8 SOFTMAX, for instance, to the plain TFLite kernel).
* ``gpu`` (the GPU delegate): checked against the op list of LiteRT's GPU delegate (its model builder;
  table below) and its data types. TensorFlow 2.21's ``Analyzer(gpu_compatibility=True)`` was tried and
  not used: it reported TOPK_V2 as compatible, which the delegate does not run.
* ``nnapi``: checked against the maximum op versions of TFLite's NNAPI delegate (``nnapi_delegate.cc``,
  ``Validate``) and its types (float or 8-bit; no 16-bit activations). NNAPI is Android-only and
  deprecated upstream; the real answer comes from ``benchmark_model --use_nnapi`` on the phone.
"""

from __future__ import annotations

from resnet_edge.tflite.model import _ints, op_name, read, type_name

TARGETS = ("cpu", "gpu", "nnapi")

#: Ops LiteRT's GPU delegate builds (gpu/common/model_builder.cc), as of LiteRT 2.x.
GPU_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS CUMSUM DENSIFY DEPTHWISE_CONV_2D
DEPTH_TO_SPACE DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GREATER
GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN
MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN
REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT_V2 SIN
SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TILE
TRANSPOSE TRANSPOSE_CONV
""".split())

#: NNAPI delegate: op -> highest op version it accepts (nnapi_delegate.cc, NNAPIDelegateKernel::Validate).
NNAPI_MAX_VERSION = {
    "ADD": 2, "MUL": 2, "SUB": 3, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 5, "SOFTMAX": 2, "RESHAPE": 1, "RESIZE_BILINEAR": 3, "PAD": 2, "PADV2": 2, "MEAN": 2,
    "RELU": 2, "RELU6": 2, "RELU_N1_TO_1": 2, "LOGISTIC": 2, "TANH": 2, "DEQUANTIZE": 2, "STRIDED_SLICE": 2,
    "TRANSPOSE": 2, "SPACE_TO_BATCH_ND": 2, "BATCH_TO_SPACE_ND": 2, "SLICE": 2, "SPACE_TO_DEPTH": 2,
    "TRANSPOSE_CONV": 3, "ARG_MAX": 2, "ARG_MIN": 2, "DIV": 1, "FLOOR": 1,
}

GPU_TYPES = {"float32", "float16", "int8", "uint8"}  # 8-bit: run through the delegate's dequantizing path


def static_report(model: bytes, target: str) -> dict:
    """Blocking ops and types for ``gpu`` or ``nnapi`` (an op table check; see the module docstring)."""
    if target not in ("gpu", "nnapi"):
        raise ValueError(target)
    m, _ = read(model)
    g = m.subgraphs[0]
    blockers = []
    for i, op in enumerate(g.operators or []):
        name = op_name(m, op.opcodeIndex)
        version = m.operatorCodes[op.opcodeIndex].version
        ins, outs = _ints(op.inputs), _ints(op.outputs)
        types = {type_name(g.tensors[t].type) for t in ins + outs if t >= 0}
        activations = {type_name(g.tensors[t].type) for t in outs if t >= 0}
        if target == "gpu":
            if name not in GPU_OPS:
                blockers.append({"op": name, "index": i, "why": "the GPU delegate has no kernel for this op"})
            elif activations - GPU_TYPES:
                blockers.append({"op": name, "index": i, "why": f"{'/'.join(sorted(activations - GPU_TYPES))} outputs are not supported on the GPU"})
        else:
            limit = NNAPI_MAX_VERSION.get(name)
            if name in ("QUANTIZE",):
                limit = version  # supported; its version limit is not checked here
            if limit is None:
                blockers.append({"op": name, "index": i, "why": "not in the NNAPI delegate's supported ops"})
            elif version > limit:
                blockers.append({"op": name, "index": i, "why": f"op version {version} > {limit}, the highest NNAPI takes"})
            elif "int16" in types:
                blockers.append({"op": name, "index": i, "why": "16-bit activations (int16x8) are not supported by NNAPI"})
    total = len(g.operators or [])
    report = {"target": target, "ops": total, "blocked": len(blockers), "ready": not blockers, "blockers": blockers}
    if target == "gpu":
        weights = {type_name(t.type) for t in g.tensors if m.buffers[t.buffer].data is not None or m.buffers[t.buffer].offset}
        report["advice"] = ("GPU delegates run float16 natively: convert with --float16 for the smallest GPU model"
                            if "float16" not in weights else "")
    return report


def cpu_report(model: bytes, num_threads: int = 1, invoke: bool = False) -> dict:
    """Load the model with LiteRT's default XNNPACK delegate and read which ops it took (``invoke``: and
    run it once on zeros, to prove the runtime can)."""
    from resnet_edge._native import quiet_native_stderr
    from resnet_edge.harness import runtime_module

    runtime, version, module = runtime_module("auto")  # LiteRT, else tflite-runtime (a device may have only that)
    cls = module.Interpreter
    with quiet_native_stderr():
        interp = cls(model_content=model, num_threads=num_threads)
        try:
            interp.allocate_tensors()
        except RuntimeError as exc:  # LiteRT raises it with no message when the arena cannot be allocated
            raise RuntimeError(f"allocating its tensors failed ({str(exc).strip() or 'no reason given'})") from None
        if invoke:
            import numpy as np

            for d in interp.get_input_details():
                interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            interp.invoke()
    details = interp._get_ops_details()  # LiteRT's node list: the model's ops, then the delegate kernels
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    produced = {int(t) for d in delegates for t in d["outputs"]}
    consumed = {int(t) for d in delegates for t in d["inputs"]}
    graph_out = {int(o["index"]) for o in interp.get_output_details()}
    originals = [d for d in details if d["op_name"] != "DELEGATE"]
    # An op left outside every partition writes a tensor that a partition (or the graph's output, or
    # another op left outside) reads, and that no partition writes.
    outside: list[dict] = []
    wanted = consumed | graph_out
    changed = True
    while changed:
        changed = False
        for d in originals:
            outs = {int(t) for t in d["outputs"]}
            if d not in outside and not outs & produced and outs & wanted:
                outside.append(d)
                wanted |= {int(t) for t in d["inputs"]}
                changed = True
    outside.sort(key=lambda d: int(d["index"]))
    blockers = [{"op": d["op_name"], "index": int(d["index"]), "why": "XNNPACK did not take this op (runs on the built-in TFLite kernel)"}
                for d in outside]
    shown = {"litert": "LiteRT", "tflite-runtime": "tflite-runtime"}[runtime]
    return {"target": "cpu", "runtime": f"{shown} {version}", "ops": len(originals),
            "partitions": len(delegates), "blocked": len(blockers), "ready": len(delegates) == 1 and not blockers,
            "blockers": blockers}


def cpu_report_isolated(model: bytes, timeout: float = 120) -> dict:
    """:func:`cpu_report` (with one invoke) in a child process that gets the model on standard input,
    under the memory and time limits of :mod:`resnet_edge._child`: a model that crashes the runtime or
    makes it allocate without bound cannot take the caller down. ``"loaded": False`` and ``"error"``
    say when the runtime could not load or run it."""
    import json
    import subprocess
    import sys

    from resnet_edge import _child

    memory = _child.memory_limit(len(model))
    try:
        proc = _child.run([sys.executable, "-m", "resnet_edge.tflite.readiness", "-"], input=model, timeout=timeout,
                          memory=memory)
    except subprocess.TimeoutExpired:
        return {"target": "cpu", "ready": False, "loaded": False,
                "error": f"the TFLite runtime did not load and run it within {timeout:g} s"}
    if proc.returncode != 0:
        return {"target": "cpu", "ready": False, "loaded": False,
                "error": f"the TFLite runtime cannot load and run it ({_child.describe_failure(proc, memory)})"}
    try:
        return {**json.loads(proc.stdout.decode().strip().splitlines()[-1]), "loaded": True}
    except (ValueError, IndexError, UnicodeDecodeError):
        return {"target": "cpu", "ready": False, "loaded": False, "error": "the runtime check gave no result"}


def report(model: bytes, target: str, isolated: bool = False) -> dict:
    """The readiness report for ``target`` (cpu, gpu or nnapi); ``isolated`` runs the cpu check in a
    child process (for models from elsewhere)."""
    if target == "cpu":
        return cpu_report_isolated(model) if isolated else cpu_report(model)
    if target in ("gpu", "nnapi"):
        return static_report(model, target)
    raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")


if __name__ == "__main__":  # the child process of cpu_report_isolated: the model on stdin ("-") or a path
    import json
    import sys

    from resnet_edge.tflite.model import load_bytes

    content = sys.stdin.buffer.read() if sys.argv[1] == "-" else load_bytes(sys.argv[1])
    print(json.dumps(cpu_report(content, invoke=True)))
