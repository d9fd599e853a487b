"""Loads a SavedModel and calls its serving signature, importing nothing but TensorFlow.

Run as a script in a fresh process by the InfraValidator (and usable by hand):

    python -I serving/canary_check.py [--without-keras] SAVED_MODEL_DIR < request.json > report.json

Request JSON: {"equations_b64": [...]} (base64 of each row's bytes, so that rows which are
not valid UTF-8 can be sent too) or {"equations": [...]}; optional "huge_batch" (int).
Report JSON: the signature's inputs/outputs, the answers per row, an empty batch and a
huge batch, latency figures, the assets, and which modules were imported (to show that
no project code, and whether Keras, was needed).

The same rows are also answered through the loader TensorFlow Serving uses (``session``
in the report): the MetaGraph imported into a graph-mode Session, the variables restored
by the SaverDef's restore op, the init op run, the signature called by its tensor names
(``tf.compat.v1.saved_model.loader.load``, as ``saved_model_cli run`` does), and the TF
Serving warm-up file's requests are replayed through it. Its answers must equal the
object loader's row for row.
"""

import base64
import importlib.machinery
import json
import sys
import time


class _Refuse:
    def create_module(self, spec):
        raise ImportError(f"keras is not importable in this process ({spec.name})")

    def exec_module(self, module):
        raise ImportError("keras is not importable in this process")


class _BlockKeras:
    """Makes ``import keras`` fail, as in a process where Keras is not installed.

    ``import tensorflow`` itself imports Keras when it is installed (TF's __init__ eagerly
    imports keras.src.optimizers, and tolerates an ImportError there); blocking it shows
    that the SavedModel needs no Keras to load and run.
    """

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tf_keras"):
            return importlib.machinery.ModuleSpec(name, _Refuse(), origin=None)
        return None


WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


def _warmup_requests(tf, export_dir: str) -> list:
    """The equation batches of the TF Serving warm-up file (PredictionLogs), if any."""
    path = f"{export_dir}/{WARMUP_FILE}"
    if not tf.io.gfile.exists(path):
        return []
    from tensorflow_serving.apis import prediction_log_pb2

    batches = []
    for record in tf.data.TFRecordDataset(path):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        batches.append(tf.make_ndarray(entry.predict_log.request.inputs["equation"]).tolist())
    return batches


def session_loader_check(tf, export_dir: str, equations: list, rows: list) -> dict:
    """Answers ``equations`` through TF Serving's way of loading a SavedModel and compares
    them with ``rows`` (the object loader's answers). Never raises: a failure is reported."""
    report = {"mismatches": [], "error": None, "warmup_requests": 0}
    try:
        warmup = _warmup_requests(tf, export_dir)  # read eagerly, before the graph session
        graph = tf.Graph()
        with tf.compat.v1.Session(graph=graph) as sess:
            started = time.time()
            meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
            report["load_seconds"] = time.time() - started
            signature = meta_graph.signature_def["serving_default"]
            feed_name = signature.inputs["equation"].name
            fetches = {k: v.name for k, v in signature.outputs.items()}

            def call(batch):
                return sess.run(fetches, {feed_name: batch})

            out = call(equations)
            for i, text in enumerate(equations):
                got = {"result": out["result"][i].decode(), "valid": bool(out["valid"][i]),
                       "error": out["error"][i].decode(),
                       "confidence": float(out["confidence"][i]),
                       "trusted": bool(out["trusted"][i]) if "trusted" in out else None}
                if "working" in out:  # a model that writes its working: that output too
                    got["working"] = out["working"][i].decode()
                want = rows[i]
                if (got["result"], got["valid"], got["error"], got["trusted"],
                        got.get("working")) != (
                        want["result"], want["valid"], want["error"], want["trusted"],
                        want.get("working")) or abs(
                        got["confidence"] - want["confidence"]) > 1e-5:
                    report["mismatches"].append({"row": i, "session": got, "object": want})
            report["rows"] = len(equations)
            for batch in warmup:
                answered = call(batch)
                if any(len(v) != len(batch) for v in answered.values()):
                    raise ValueError(f"a warm-up request of {len(batch)} rows was answered "
                                     f"with {[len(v) for v in answered.values()]} rows")
                report["warmup_requests"] += 1
            single = []
            for _ in range(20):
                t = time.perf_counter()
                call(equations[:1])
                single.append(time.perf_counter() - t)
            report["single_p50_ms"] = 1000 * sorted(single)[len(single) // 2]
    except Exception as exc:  # reported, so that the InfraValidator can refuse the push
        report["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    return report


def main() -> int:
    without_keras = "--without-keras" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--without-keras"]
    if without_keras:
        sys.meta_path.insert(0, _BlockKeras())
    import tensorflow as tf

    export_dir = args[0]
    request = json.load(sys.stdin)
    if "equations_b64" in request:
        equations = [base64.b64decode(e) for e in request["equations_b64"]]
    else:
        equations = [e.encode("utf-8") for e in request["equations"]]
    keras_before_load = "keras" in sys.modules
    started = time.time()
    loaded = tf.saved_model.load(export_dir)
    load_seconds = time.time() - started
    fn = loaded.signatures["serving_default"]
    inputs = {k: [v.dtype.name, v.shape.as_list()]
              for k, v in fn.structured_input_signature[1].items()}
    outputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()}
    out = fn(equation=tf.constant(equations, dtype=tf.string))
    rows = []
    for i, text in enumerate(equations):
        rows.append({
            "equation": text[:200].decode("utf-8", errors="replace"),
            "result": out["result"][i].numpy().decode(),
            "valid": bool(out["valid"][i].numpy()),
            "error": out["error"][i].numpy().decode(),
            "confidence": float(out["confidence"][i].numpy()),
            "trusted": bool(out["trusted"][i].numpy()) if "trusted" in out else None,
        })
        if "working" in out:
            rows[-1]["working"] = out["working"][i].numpy().decode()
    empty = fn(equation=tf.constant([], dtype=tf.string))
    empty_ok = all(int(v.shape[0]) == 0 for v in empty.values())

    # A huge batch of the same rows: same answers, row for row, as the small batch.
    huge = int(request.get("huge_batch", 0))
    huge_report = None
    short = [i for i, e in enumerate(equations) if len(e) <= 256] or list(range(len(equations)))
    if huge and equations:
        picks = [short[i % len(short)] for i in range(huge)]
        big = [equations[i] for i in picks]
        t = time.perf_counter()
        big_out = fn(equation=tf.constant(big, dtype=tf.string))
        seconds = time.perf_counter() - t
        results = big_out["result"].numpy()
        valid = big_out["valid"].numpy()
        same = all(results[i].decode() == rows[picks[i]]["result"]
                   and bool(valid[i]) == rows[picks[i]]["valid"] for i in range(huge))
        huge_report = {"rows": huge, "same_answers_as_small_batch": same,
                       "lengths": sorted({int(v.shape[0]) for v in big_out.values()}),
                       "seconds": seconds}

    single = []
    first = [e for e, r in zip(equations, rows) if r["valid"]][:1] or equations[:1]
    for _ in range(20):
        t = time.perf_counter()
        fn(equation=tf.constant(first, dtype=tf.string))
        single.append(time.perf_counter() - t)
    batch = tf.constant([equations[short[i % len(short)]] for i in range(256)], dtype=tf.string)
    fn(equation=batch)  # unmeasured: the first call at a new batch size may compile (XLA)
    t = time.perf_counter()
    for _ in range(5):
        fn(equation=batch)
    batch_rate = 5 * 256 / (time.perf_counter() - t)
    single.sort()

    assets = {}
    for name, asset in sorted(getattr(loaded, "assets", {}).items()):
        with tf.io.gfile.GFile(asset.asset_path.numpy().decode()) as f:
            assets[name] = json.loads(f.read())
    session = session_loader_check(tf, export_dir, equations, rows)
    report = {
        "session": session,
        "inputs": inputs,
        "outputs": outputs,
        "rows": rows,
        "empty_batch_ok": empty_ok,
        "huge_batch": huge_report,
        "load_seconds": load_seconds,
        "single_p50_ms": 1000 * single[len(single) // 2],
        "single_p95_ms": 1000 * single[int(len(single) * 0.95) - 1],
        "batch256_equations_per_second": batch_rate,
        "imported_project_code": sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("components", "pipeline") or m.startswith("serving.")),
        "imported_keras": "keras" in sys.modules,
        "keras_before_load": keras_before_load,
        "keras_blocked": without_keras,
        "asset_files": sorted(tf.io.gfile.listdir(export_dir + "/assets")),
        "assets": assets,
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
