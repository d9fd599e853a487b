"""Loads a SavedModel and calls its serving signature, importing nothing but TensorFlow.

Run as a script in a fresh process by the InfraValidator (and usable by hand):

    python serving/canary_check.py SAVED_MODEL_DIR < requests.json > report.json

Input JSON: {"equations": [...]}; output JSON: the signature's inputs/outputs description,
the answers per row, latency figures, and which modules were imported (to prove that no
project code and no Keras was needed).
"""

import json
import sys
import time


def main() -> int:
    import tensorflow as tf

    export_dir = sys.argv[1]
    request = json.load(sys.stdin)
    started = time.time()
    loaded = tf.saved_model.load(export_dir)
    load_seconds = time.time() - started
    fn = loaded.signatures["serving_default"]
    inputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_input_signature[1].items()}
    outputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()}
    equations = request["equations"]
    out = fn(equation=tf.constant(equations, dtype=tf.string))
    rows = []
    for i in range(len(equations)):
        rows.append({
            "equation": equations[i],
            "result": out["result"][i].numpy().decode(),
            "valid": bool(out["valid"][i].numpy()),
            "error": out["error"][i].numpy().decode(),
            "confidence": float(out["confidence"][i].numpy()),
        })
    empty = fn(equation=tf.constant([], dtype=tf.string))
    empty_ok = all(int(v.shape[0]) == 0 for v in empty.values())
    single = []
    for _ in range(20):
        t = time.perf_counter()
        fn(equation=tf.constant(equations[:1], dtype=tf.string))
        single.append(time.perf_counter() - t)
    batch = tf.constant((equations * (256 // max(1, len(equations)) + 1))[:256], dtype=tf.string)
    t = time.perf_counter()
    for _ in range(5):
        fn(equation=batch)
    batch_rate = 5 * 256 / (time.perf_counter() - t)
    single.sort()
    report = {
        "inputs": inputs,
        "outputs": outputs,
        "rows": rows,
        "empty_batch_ok": empty_ok,
        "load_seconds": load_seconds,
        "single_p50_ms": 1000 * single[len(single) // 2],
        "batch256_equations_per_second": batch_rate,
        "imported_project_code": any(m.split(".")[0] in ("components", "pipeline")
                                     or m == "serving.signature" for m in sys.modules),
        "imported_keras": "keras" in sys.modules,
        "assets": sorted(tf.io.gfile.listdir(export_dir + "/assets")),
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
