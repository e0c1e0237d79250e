"""What the commands print: one formatter per result for people (tables and key: value lines), and
``--json`` for machines (:func:`_echo_json_or`). Formatters take the library's plain dicts and never compute.
"""

from __future__ import annotations

import click

from resnet_edge.ui import safe_text


def _echo_json_or(obj, as_json: bool, human) -> None:
    from resnet_edge.ui import emit

    emit(obj, as_json, human, click.echo)


def _warmup_text(m: dict) -> str:
    ended = m["warmup_ended_at_step"]
    if ended is not None:
        return f"lr/10 for the first {ended} steps"
    if m["recipe"]["warmup"] == 0:
        return "none"
    return "lr/10 for the whole run (training error stayed above 80%)" if m["recipe"]["warmup"] == "auto" else \
        "lr/10 for the whole run (shorter than --warmup)"


def _start_text(m: dict) -> str:
    from resnet_edge.train import FINE_TUNE_FACTOR, describe_freeze

    r = m["recipe"]
    text = f"{m['weights']['file']} ({m['weights']['format']}), new classifier"
    if r["freeze"] == "backbone":
        return f"{text}; only the classifier trained (--freeze backbone)"
    tune = r["fine_tune_lr"] if r["fine_tune_lr"] is not None else r["lr"] * FINE_TUNE_FACTOR
    return (f"{text}; {r['head_epochs']} head epoch(s) at lr {r['lr']:g}, then fine-tuned at {tune:g} "
            f"({describe_freeze(r['freeze'])})")


def _train_human(m: dict) -> str:
    from resnet_edge.ui import key_values

    f, b = m["final"], m["best"]
    return key_values([
        ("model", f"{m['name']} on {m['data']['source']}"),
        ("epochs", f"{m['epochs_done']} ({f['step']} steps, strategy {m['strategy']['name']} x{m['strategy']['replicas']})"),
        ("final", f"train acc {f['train_acc']:.2%}, val acc {f['val_acc']:.2%}, loss {f['loss']:.4f}"),
        ("best", f"val acc {b['val_acc']:.2%} at epoch {b['epoch']} (best.keras)"),
        *([("start", _start_text(m))] if m.get("weights") else []),
        ("warm-up", _warmup_text(m)),
        ("time", f"{m['seconds_total']:.1f} s training, {m['seconds_total'] / max(1, m['epochs_done']):.2f} s per epoch"),
        ("written", "model.keras, best.keras, history.csv/json, curves.png, checkpoints/"),
    ])


def _evaluate_human(r: dict) -> str:
    from resnet_edge.ui import key_values, table

    k = r["top_k"]
    head = key_values([
        ("model", safe_text(r["model"], 300)),
        ("data", f"{r['data']} ({r['split']}, {r['n']} images)"),
        ("top-1", f"{r['top1']:.2%}"),
        (f"top-{k}", f"{r['top5']:.2%}"),
    ])
    per_class = table(
        [{**c, "accuracy": "-" if c["accuracy"] is None else f"{c['accuracy']:.1%}"} for c in r["per_class"]],
        [("class", "class"), ("n", "n"), ("accuracy", "accuracy")], right={"n", "accuracy"},
    )
    confused = ", ".join(f"{c['true']}->{c['predicted']} x{c['count']}" for c in r["confusions"]) or "none"
    return f"{head}\n\n{per_class}\n\nmost confused (true->predicted): {confused}"


def _qat_human(m: dict) -> str:
    from resnet_edge.ui import key_values

    a = m["accuracy"]
    counts = {}
    for row in m["layers"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    left = ", ".join(f"{r['layer']} ({r['why']})" for r in m["left_in_float"]) or "none"
    return key_values([
        ("written", m["file"]["path"]),
        ("val accuracy", f"float {a['float']:.2%} -> QAT Keras {a['qat_keras']:.2%} -> int8 TFLite {a['int8_tflite']:.2%}"),
        ("int8 TFLite", f"{m['int8_tflite']['bytes']:,} bytes, top-1 agreement with QAT Keras {m['int8_tflite']['top1_agreement']:.2%}"),
        ("layers", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))),
        ("left in float", left),
    ])


def _prune_human(m: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, table

    a, g = m["accuracy"], m["gzip_bytes"]
    pairs = [
        ("written", m["file"]["path"]),
        ("method", _method_text(m["settings"])),
        ("sparsity", f"{m['sparsity']:.2%} of the pruned kernels' weights are zero"),
        ("val accuracy", f"{a['before']:.2%} -> {a['after']:.2%}"),
        ("gzip float32", f"{human_bytes(g['float32_tflite_before'])} -> {human_bytes(g['float32_tflite_after'])} (raw {human_bytes(g['float32_tflite_raw'])})"),
    ]
    if "int8_tflite" in m:
        t = m["int8_tflite"]
        pairs.append(("PQAT int8", f"val accuracy {a['int8_tflite']:.2%}; zeros in int8 weights {t['weight_sparsity']['sparsity']:.2%}; gzip {human_bytes(t['gzip_bytes'])}"))
    rows = [{**r, "sparsity": f"{r['sparsity']:.1%}"} for r in m["layers"]]
    cols = [("layer", "layer"), ("weights", "weights"), ("sparsity", "sparsity")]
    if rows and "unique_values" in rows[0]:
        cols.append(("unique_values", "values"))
    if rows and "m_by_n_ok" in rows[0]:
        cols.append(("m_by_n_ok", "M:N ok"))
    return key_values(pairs) + "\n\n" + table(rows, cols, right={"weights", "sparsity", "unique_values"})


def _method_text(settings: dict) -> str:
    """'magnitude: sparsity 0.5, schedule polynomial, epochs 2' (the method named once, then its settings)."""
    rest = [f"{k.replace('_', ' ')} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in settings.items()
            if k != "method" and v not in (None, [], "") and k not in ("lr", "batch_size", "limit")]
    return f"{settings.get('method', '?')}: {', '.join(rest)}" if rest else str(settings.get("method", "?"))


def _shares(ratio) -> str:
    """0.5 -> "50%"; one per stage -> "100%/50%/25%"."""
    return "/".join(f"{k:.0%}" for k in ratio) if isinstance(ratio, (list, tuple)) else f"{ratio:.0%}"


def _channels_human(m: dict) -> str:
    from resnet_edge.ui import key_values, si

    a, c = m["accuracy"], m["counts"]
    return key_values([
        ("written", f"{m['file']['path']} ({m['name']})"),
        ("kept", f"{_shares(m['settings']['keep'])} of inner channels"
                 + (f", {_shares(m['settings']['stream'])} of the residual stream "
                    f"({'/'.join(map(str, m['stream_widths']))} channels)" if m.get("stream_widths") else "")
                 + f" by {m['settings']['criterion']}"),
        ("MACs", f"{si(c['before']['macs'])} -> {si(c['after']['macs'])} ({c['mac_ratio']:.2f}x)"),
        ("parameters", f"{c['before']['trainable_params']:,} -> {c['after']['trainable_params']:,}"),
        ("val accuracy", f"{a['before']:.2%} -> {a['thinned_before_fine_tune']:.2%} thinned -> "
                         f"{a['batchnorm_recalibrated']:.2%} BatchNorm re-estimated -> {a['after']:.2%} fine-tuned"),
        *([("WARNING", f"accuracy is {a['drop_points']:.2f} points below the source: fine-tune longer (--epochs)")]
          if m.get("status") == "dropped" else []),
    ])


def _convert_human(manifests: list) -> str:
    from resnet_edge.ui import human_bytes, table

    rows = []
    for m in manifests:
        p = m["parity"] or {}
        acc = "-" if p.get("tflite_accuracy") is None else f"{p['keras_accuracy']:.2%} -> {p['tflite_accuracy']:.2%}"
        io = m["quantization"]["inputs"][0]["dtype"] + "/" + m["quantization"]["outputs"][0]["dtype"]
        rows.append({"file": m["file"]["path"], "mode": m["mode"], "size": human_bytes(m["file"]["bytes"]), "io": io,
                     "agree": "-" if not p else (f"{p['top1_agreement']:.1%}" if _agreement_means_something(m)
                                                 else "n/a"),
                     "maxdiff": "-" if not p else f"{p['max_abs_diff']:.2e}", "acc": acc, "status": m["status"]})
    text = table(rows, [("file", "file"), ("mode", "mode"), ("size", "size"), ("io", "in/out"), ("agree", "top-1 agree"),
                        ("maxdiff", "max |diff|"), ("acc", "accuracy keras -> tflite"), ("status", "status")],
                 right={"size", "agree", "maxdiff"})
    lines = [text]
    for m in manifests:
        for target, r in m["readiness"].items():
            lines.append(_readiness_line(m["file"]["path"], target, r))
        c = m["compatibility"]
        old = c["tflite_runtime_2_14"]
        old_text = "not checked" if old is None else ("loads and runs" if old["ok"] else
                                                      (f"not checked: {old['error']}" if old["ok"] is None else f"FAILS: {old['error']}"))
        lines.append(f"{m['file']['path']}: needs TFLite runtime >= {c['min_runtime_version']}; tflite-runtime 2.14: {old_text}")
        for problem in (m.get("app_metadata") or {}).get("problems") or []:
            lines.append(f"{m['file']['path']} in apps: {problem}")
    if any(m["parity"] and not _agreement_means_something(m) for m in manifests):
        lines.append("top-1 agree n/a: the source model is untrained (or predicts one class for every test input), so "
                     "agreement says nothing; max |diff| of the outputs is the measure")
    for m in manifests:
        if m.get("written"):
            lines.append(f"wrote {safe_text(m['written']['model'], 300)} and its manifest {safe_text(m['written']['manifest'], 300)}")
    if manifests and manifests[0].get("untrained_warning"):
        lines.append("note: " + manifests[0]["untrained_warning"])
    return "\n".join(lines)


def _agreement_means_something(manifest: dict) -> bool:
    """Top-1 agreement means something for a trained model whose predictions spread over classes; an
    untrained net predicts one class, or a few, for every input, and agrees with itself by chance."""
    return bool(manifest["source"].get("trained")) and manifest["parity"].get("keras_distinct_predictions", 2) > 1


def _readiness_line(name: str, target: str, r: dict) -> str:
    if "error" in r:
        return f"{name} on {target}: {r['error']}"
    if r["ready"]:
        extra = f" ({_plural(r['partitions'], 'XNNPACK partition')} in {r.get('runtime', 'LiteRT')})" if target == "cpu" else ""
        line = f"{name} on {target}: ready, all {r['ops']} ops{extra}"
    else:
        what = ", ".join(f"{b['op']}#{b['index']}" for b in r["blockers"][:6])
        why = "; ".join(sorted({b["why"] for b in r["blockers"]}))
        parts = f", {_plural(r['partitions'], 'partition')} in {r.get('runtime', 'LiteRT')}" if target == "cpu" else ""
        line = f"{name} on {target}: {r['blocked']} of {r['ops']} ops blocked{parts}: {what} ({why})"
    if r.get("advice"):
        line += f"; {r['advice']}"
    return line


def _inspect_human(path: str, r: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, safe_text, table

    shown = safe_text(path, 120)

    def io_text(t):
        q = t["quantization"]
        qt = "" if not q else (f" scale {q['scale']:.6g} zero {q['zero_point']}" if q["kind"] == "per-tensor" else " per-channel")
        return f"{t['name']} {t['shape']} {t['dtype']}{qt}"

    meta = r["metadata"] or {}
    check = r["integrity"]
    integrity_text = {"verified": "verified (the checksum resnet-edge wrote inside matches)",
                      "unverified": f"not verified: {check.get('why', '')}"}.get(check["status"], check["status"])
    pairs = [
        ("file", f"{shown} ({human_bytes(r['bytes'])}, sha256 {r['sha256'][:12]}...)"),
        ("integrity", integrity_text),
    ]
    if r.get("manifest"):
        mf = r["manifest"]
        pairs.append(("manifest", f"{mf['path']} matches" if mf["matches"] else f"{mf['path']} is STALE: {mf['why']}"))
    pairs += [
        ("size", f"weights {human_bytes(r['size']['weights'])}, graph and other {human_bytes(r['size']['graph_and_other'])}"),
        ("input", "; ".join(io_text(t) for t in r["inputs"])),
        ("output", "; ".join(io_text(t) for t in r["outputs"])),
        ("tensors", f"{r['tensors']}: " + ", ".join(f"{n} {k}" for k, n in sorted(r["tensor_dtypes"].items()))),
        ("quantization", f"{r['quantization']['per_channel_tensors']} per-channel, {r['quantization']['per_tensor_tensors']} per-tensor tensors"),
        ("weight sparsity", f"{r['weight_sparsity']['sparsity']:.1%} zeros in conv/FC weights ({', '.join(r['weight_sparsity']['dtypes']) or '-'})"),
        ("min runtime", r["min_runtime_version"] or "not recorded"),
        ("signatures", safe_text("; ".join(f"{s['key']}({', '.join(s['inputs'])}) -> {', '.join(s['outputs'])}"
                                           for s in r["signatures"]), 400) or "none"),
        ("metadata", ", ".join(r["metadata_entries"]) or "none"),
    ]
    if meta.get("error"):
        pairs.append(("model", meta["error"]))
    elif meta:
        labels = meta.get("labels") if isinstance(meta.get("labels"), list) else None
        pairs.append(("model", f"{meta.get('name')} ({meta.get('mode')}), {'trained' if meta.get('trained') else 'UNTRAINED'}"))
        pairs.append(("labels", "none" if not labels else f"{len(labels)}: {', '.join(map(str, labels[:10]))}{' ...' if len(labels) > 10 else ''}"))
        norm = meta.get("normalization")
        pairs.append(("normalization", "none (feed normalized input)" if not isinstance(norm, dict) else
                      f"inside the model: mean {_short(norm.get('mean'))}, std {_short(norm.get('std'))} (feed raw 0..255 pixels)"))
    pairs += app_metadata_pairs(r.get("app_metadata"))
    ops = table([{"op": k, "n": v, "version": r["op_versions"][k]} for k, v in r["ops"].items()],
                [("op", "op"), ("n", "count"), ("version", "version")], right={"n", "version"})
    ready = "\n".join(_readiness_line(shown, t, rep) for t, rep in r["readiness"].items())
    return f"{key_values(pairs)}\n\n{ops}\n\n{ready}"


def app_metadata_pairs(app: dict | None) -> list[tuple[str, str]]:
    """The lines of ``inspect`` (and ``metadata``) about the standard metadata that app frameworks read."""
    if app is None:
        return [("app metadata", "none: MediaPipe and the Task Library cannot use this model as it is "
                                 "(add it: resnet-edge metadata MODEL --labels FILE)")]
    if app.get("error"):
        return [("app metadata", f"DAMAGED: {app['error']}")]
    norm, rng = app.get("normalization"), app.get("input_range")
    labels = app.get("labels")
    pairs = [
        ("app metadata", f"TFLITE_METADATA: {app.get('name') or '(no name)'}"
                         + (f", version {app['version']}" if app.get("version") else "")
                         + (f", by {app['author']}" if app.get("author") else "")
                         + (f", license {app['license']}" if app.get("license") else "")),
        ("  labels", "none (apps show class indices)" if labels is None else
         f"{labels} in {app.get('labels_file')}: {', '.join(map(str, app.get('first_labels') or []))}"
         + (" ..." if labels > len(app.get("first_labels") or []) else "")),
        ("  normalization", "none" if not norm else
         f"(pixel - {_short(norm.get('mean'))}) / {_short(norm.get('std'))}, {app.get('color_space') or 'UNKNOWN'}"),
        ("  input range", "not stated" if not rng else f"{_short(rng.get('min'))} .. {_short(rng.get('max'))}"),
    ]
    for problem in app.get("problems") or []:
        pairs.append(("  PROBLEM", problem))
    return pairs


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _short(values) -> str:
    """Per-channel statistics with a sensible number of digits: [77.996, 78.0] -> [78.0, 78.0]."""
    if not isinstance(values, list):
        return str(values)
    return "[" + ", ".join(f"{v:.4g}" if isinstance(v, (int, float)) else str(v) for v in values[:8]) + "]"


def _build_human(s: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, si

    spec, c = s["spec"], s["counts"]
    shortcut = "none (plain)" if spec["plain"] else spec["shortcut"]
    stages = "-".join(str(n) for n in s["stages"])
    size = spec["input_size"]
    pre = spec.get("preprocess")
    pairs = [
        ("model", s["name"]),
        ("family", f"{spec['family']}, {s['block']} blocks {stages}, shortcut {shortcut}"
                   + (f", {spec['variant']}" if s["block"] == "bottleneck" else "")),
        ("input", f"{size}x{size}x3 {s['input']['dtype']}" + (f" raw pixels, normalized inside (mean {pre['mean']}, std {pre['std']})" if pre else "")),
        ("classes", f"{spec['classes']} ({spec['classifier_activation'] or 'logits'})"),
        ("parameters", f"{c['trainable_params']:,} trainable, {c['total_params']:,} total"),
        ("MACs", f"{si(c['macs'])}" + (f"  (paper: {s['paper']})" if s.get("paper") else "")),
        ("layers", f"{c['conv_layers']} conv + 1 dense; {s['layers']} Keras layers"),
    ]
    if "file" in s:
        f = s["file"]
        pairs.append(("written", f"{f['path']} ({human_bytes(f['bytes'])}, sha256 {f['sha256'][:12]}...) + manifest"))
    w = s.get("weights")
    if w:
        pairs.append(("weights", f"{w['file']} ({w['format']}): {w['layers']} layers, {w['tensors']} tensors; "
                                 + ("a new classifier: fine-tune it" if w["classifier"] == "new" else "classifier loaded")))
    else:
        pairs.append(("note", "weights are untrained: accuracy means nothing until you train it"))
    return key_values(pairs)


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}")


def _mb(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _bench_human(r: dict) -> str:
    from resnet_edge.ui import safe_text, table

    rows = []
    for x in r["records"]:
        rows.append({"model": safe_text(x["model"], 60), "setting": x["setting"], "init": _ms(x["init_ms"]),
                     "first": _ms(x["first_inference_ms"]), "warm": _ms(x["warmup_avg_ms"]), "avg": _ms(x["avg_ms"]),
                     "std": _ms(x["std_ms"]), "min": _ms(x["min_ms"]), "p50": _ms(x["p50_ms"]), "p90": _ms(x["p90_ms"]),
                     "p99": _ms(x["p99_ms"]), "max": _ms(x["max_ms"]),
                     "tput": "-" if not x["throughput_per_s"] else f"{x['throughput_per_s']:.1f}",
                     "mem": "-" if x.get("peak_rss_overall_mb") is None else
                            f"{_mb(x.get('peak_rss_init_mb'))}/{_mb(x['peak_rss_overall_mb'])}",
                     "ratio": "" if x.get("vs_baseline") is None else f"{x['vs_baseline']:.2f}x"})
    cols = [("model", "model"), ("setting", "setting"), ("init", "init ms"), ("first", "first ms"), ("warm", "warm-up ms"),
            ("avg", "avg ms"), ("std", "std"), ("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
            ("max", "max"), ("tput", "inf/s"), ("mem", "peak RSS MB init/all")]
    if r.get("baseline"):
        cols.append(("ratio", "p50 vs base"))
    lines = [table(rows, cols, right={k for k, _ in cols[2:]})]
    m = r.get("machine") or {}
    first = r["records"][0] if r["records"] else {}
    where = "" if r.get("target", "local") == "local" else f" (target {safe_text(r['target'], 80)})"
    lines.append(f"machine{where}: {safe_text(m.get('cpu'), 80)} ({safe_text(', '.join(m.get('isa') or []) or m.get('arch'), 120)}), "
                 f"{safe_text(m.get('cores'), 8)} cores; {safe_text(first.get('runtime'), 40)} {safe_text(first.get('runtime_version'), 40)}; "
                 f"{_plural(first.get('count', 0), 'timed run')} per row ({first.get('rounds')} x {first.get('runs')}), "
                 f"inputs from {'the data' if first.get('input_source') == 'data' else 'each signature'}")
    if m.get("emulated"):
        lines.append("EMULATED: this target runs under qemu user-mode emulation; its latencies are not a device's")
    for x in r["records"]:
        where = f"{safe_text(x['model'], 60)} [{x['setting']}]"
        if x.get("fully_accelerated") is not None:
            lines.append(f"{where}: {safe_text(x.get('accelerator'), 40)}, fully accelerated: {'yes' if x['fully_accelerated'] else 'no (some ops run on the CPU fallback)'}")
        for note in x.get("notes") or []:
            lines.append(f"{where}: {safe_text(note, 300)}")
        wc = x.get("weight_cache_init")
        if wc:
            built = "" if wc["init_building_ms"] is None else f", {_ms(wc['init_building_ms'])} ms building it"
            lines.append(f"{where}: weight cache {safe_text(wc['path'], 120)}: init {_ms(wc['init_without_ms'])} ms "
                         f"without it, {_ms(x['init_ms'])} ms with it{built}")
    for model in dict.fromkeys(x["model"] for x in r["records"] if x.get("integrity") == "unverified"):
        lines.append(f"{safe_text(model, 60)}: not verified (no resnet-edge checksum inside: a model from another tool)")
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _eval_human(r: dict) -> str:
    from resnet_edge.ui import key_values, safe_text, table

    s = r["setting"]
    pairs = [("model", f"{safe_text(r['model'], 120)} ({r['integrity']}{'; ' + safe_text(r['model_name'], 80) if r.get('model_name') else ''})"),
             *([("target", safe_text(r["target"], 120))] if r.get("target", "local") != "local" else []),
             ("data", f"{safe_text(r['data'], 80)}, {r['split'] + ' split' if r['split'] != 'all' else 'every image'}, "
                      f"{r['n']} images" + (f" ({r['skipped']} unreadable, skipped; e.g. "
                                            f"{safe_text((r.get('skipped_files') or ['?'])[0], 200)}; --strict fails "
                                            "instead)" if r.get("skipped") else "")),
             ("inputs", safe_text(r["preprocessing"]["from"], 200)),
             ("runtime", safe_text(f"{s['runtime']} {s['runtime_version']}, {s['api']}", 80) +
              safe_text(f", {s['accelerator']}" if s.get("accelerator") else f", {s.get('kernels')}", 60) +
              (f", {s['threads']} threads" if s.get("threads") else "") +
              ("" if s.get("fully_accelerated") is None else f", fully accelerated: {'yes' if s['fully_accelerated'] else 'no'}")),
             ("top-1", _pct(r["top1"])), (f"top-{r['top_k']}", _pct(r["top5"])),
             ("latency", f"p50 {_ms(s['p50_ms'])} ms, p90 {_ms(s['p90_ms'])} ms per image (batch 1)" +
              (" (EMULATED by qemu: not the device's)" if s.get("emulated") else ""))]
    for note in s.get("notes") or []:
        pairs.append(("note", safe_text(note, 300)))
    if r.get("compare"):
        c = r["compare"]
        pairs.append(("keras", f"{safe_text(c['model'], 80)}: top-1 {_pct(c['keras_top1'])} (tflite {_pct(r['top1'])}, "
                               f"drop {c['drop_points']:+.2f} points); top-1 agreement {_pct(c['top1_agreement'])}, "
                               f"max |diff| {c['max_abs_diff']:.3g}, mean |diff| {c['mean_abs_diff']:.3g}"))
    if r.get("reference"):
        pairs.append(("reference", f"{safe_text(r['reference']['from'], 120)}: top-1 {_pct(r['reference']['top1'])}"))
    if r["confusions"]:
        pairs.append(("confusions", ", ".join(f"{c['true']} -> {c['predicted']} x{c['count']}" for c in r["confusions"])))
    text = key_values(pairs)
    per = table([{"class": c["class"], "n": c["n"], "acc": _pct(c["accuracy"])} for c in r["per_class"][:50]],
                [("class", "class"), ("n", "images"), ("acc", "top-1")], right={"n", "acc"})
    text += "\n\n" + per + ("\n(first 50 classes; --json has all)" if len(r["per_class"]) > 50 else "")
    if r.get("diff"):
        d = r["diff"]
        rows = [{"setting": x["setting"], "top1": _pct(x["top1"]), "p50": _ms(x["p50_ms"]), "init": _ms(x["init_ms"]),
                 "acc": ("yes" if x["fully_accelerated"] else "no") if x.get("fully_accelerated") is not None else "-"}
                for x in d["sides"]]
        text += "\n\n" + table(rows, [("setting", "setting"), ("top1", "top-1"), ("p50", "p50 ms"), ("init", "init ms"),
                                      ("acc", "fully accelerated")], right={"top1", "p50", "init"})
        text += (f"\n{d['sides'][0]['setting']} vs {d['sides'][1]['setting']}: top-1 agreement {_pct(d['top1_agreement'])}, "
                 f"max |diff| {d['max_abs_diff']:.3g}, mean |diff| {d['mean_abs_diff']:.3g} over {d['n']} images")
        if d.get("step"):
            text += (f"\nin quantization steps ({d['step']:.3g} each): at most {d['max_diff_steps']}; "
                     f"{d['scores_differing']:,} of {d['scores']:,} scores differ, on {d['inputs_differing']} of "
                     f"{d['n']} images")
    if r["gate"]["checked"]:
        text += "\n" + ("gate: FAILED: " + r["gate"]["why"] if r["gate"]["failed"] else "gate: passed (" + r["gate"]["why"] + ")")
    return text


def _metadata_human(r: dict) -> str:
    from resnet_edge.ui import key_values, safe_text

    pairs = [("wrote", ", ".join(safe_text(p, 300) for p in r["written"])),
             ("labels", r["labels_from"]), ("normalization", r["normalization_from"])]
    pairs += app_metadata_pairs(r["app_metadata"])
    pairs += [("warning", w) for w in r["warnings"]]
    return key_values(pairs)


def _csv_safe(v):
    """A cell a spreadsheet will not run as a formula and a terminal will not obey (text from a device or a file
    name: control characters and escape sequences are shown escaped)."""
    if isinstance(v, str):
        v = safe_text(v, 10_000)
        if v[:1] in ("=", "+", "-", "@", "\t", "\r"):
            return "'" + v
    return v


def _json_or_text(text):
    import json

    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _run_human(r: dict) -> str:
    """``run``'s table: one row per variant, mode and target setting, then the gates' verdict."""
    from resnet_edge.ui import table

    def ms(v):
        return "-" if v is None else f"{v:.3g}"

    rows = [{"variant": x["variant"], "mode": x["mode"], "size": f"{x['bytes'] / 1e3:.1f} kB",
             "top1": f"{100 * x['top1']:.2f}%", "drop": "-" if x["drop_points"] is None else f"{x['drop_points']:+.2f}",
             "agree": f"{100 * x['agreement']:.1f}%", "where": f"{x['target']} {x['setting'] or ''}".strip()
             if x.get("target") else "-", "p50": ms(x["p50_ms"]), "p90": ms(x["p90_ms"]),
             "speedup": "-" if x["speedup"] is None else f"{x['speedup']:.2f}x",
             "gates": "pass" if not x["failed"] else "FAIL: " + "; ".join(x["failed"])}
            for x in r["rows"]]
    text = table(rows, [("variant", "variant"), ("mode", "mode"), ("size", "size"), ("top1", "top-1"),
                        ("drop", "drop"), ("agree", "agree"), ("where", "where"), ("p50", "p50 ms"),
                        ("p90", "p90 ms"), ("speedup", "vs f32"), ("gates", "gates")],
                 right={"size", "top1", "drop", "agree", "p50", "p90", "speedup"})
    passing = ", ".join(" ".join(p) for p in r["passing"]) or "none"
    ran = f"{len(r['ran'])} stage(s) ran" if r["ran"] else "every stage was up to date"
    report = f"; report {safe_text(r['report']['html'], 200)}" if r.get("report") else ""
    return f"{text}\nmeets every gate: {passing}; {ran}; folder {safe_text(r['folder'], 200)}{report}"


def _ms(x) -> str:
    """A latency for people; '-' where the device gave none (benchmark_model's p90)."""
    return "-" if x is None else f"{x:.3g} ms"


def _search_human(r: dict) -> str:
    """resnet-edge search's result for people."""
    w = r["winner"]
    lines = [f"winner    {w['key']}  ({w['file']}, {w['bytes'] / 1e3:,.1f} kB)",
             f"latency   p50 {_ms(w['p50_ms'])}, p90 {_ms(w['p90_ms'])}"
             + (f", mean {_ms(w.get('avg_ms'))}" if r["metric"] == "avg" else "") + f" over {w['runs']} runs (CV "
             f"{100 * (w['cv'] or 0):.1f}%"
             + (f", {100 * w['cv_robust']:.1f}% from the median deviation" if w.get("cv_robust") is not None else "")
             + f") on {r['target']} {r['setting']}: "
             + ("meets" if w["meets_budget"] else "MISSES") + f" the {r['budget_ms']:g} ms budget at {r['metric']}",
             f"accuracy  validation {100 * (w['val_acc'] or 0):.2f}%, test {100 * w['test_top1']:.2f}% (measured once) "
             f"as {w.get('mode', 'converted')}" + (f"; the float network {100 * w['float_val_acc']:.2f}% on validation"
                                                   if w.get("float_val_acc") is not None else ""),
             f"search    {len(r['trials'])} trials ({r.get('epochs_trained', 0)} epochs trained in all, "
             f"{r.get('draws_skipped', 0)} draws skipped), {r['feasible']} of {r['space']['candidates']} candidates "
             f"feasible, {r['measured']} timed ({r['device_measurements']} measurements), training "
             f"{r['train_seconds']:.0f} s",
             ]
    lm = r["latency_model"]
    if lm.get("n"):
        lines.append(f"model     latency predicted within 10% for {100 * lm['within_10pct']:.0f}% of {lm['n']} "
                     f"held-out measurements (median error {100 * lm['median_abs_error']:.1f}%)")
    b = (r.get("baseline") or {}).get("best")
    if b:
        lines.append(f"baseline  best of the plain grid: {b['candidate']} {100 * b['val_acc']:.2f}% at "
                     f"{b['latency_ms']:.3g} ms")
    elif r.get("baseline"):
        lines.append("baseline  no member of the plain grid meets the budget")
    for role, x in (r.get("second_seed") or {}).items():
        lines.append(f"seed {x['seed']}    {role} {x['candidate']} again: validation {100 * (x['val_acc'] or 0):.2f}%, "
                     f"test {100 * (x['test_top1'] or 0):.2f}%")
    for m in r.get("misses") or []:
        lines.append(f"re-timed  {m['key']}: {_ms(m.get(r['metric'] + '_ms'))} trained, over the budget (searched at "
                     f"{'-' if m.get('searched_ms') is None else format(m['searched_ms'], '.3g')} ms untrained): the next trial was taken")
    if w.get("app_path"):
        lines.append(f"runtime   {w['measured_on']}: {w['app_path']}")
    lines.append(f"recipe    {w['recipe']}")
    if r.get("below_min_accuracy"):
        lines.append("warning   the winner's test top-1 is below --min-accuracy")
    return "\n".join(lines)
