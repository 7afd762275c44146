"""mnistcodec.js's own float32 kernels against onnxruntime-web for the synthesis transform, in Node.

    (cd /tmp/ort && npm install onnxruntime-web@1.20.1)      # once; a bench tool, not a dependency
    python bench/js_ort.py --ort /tmp/ort/node_modules/onnxruntime-web [--model vr-mse]

Exports the model's synthesis as ONNX (``mnistcodec export MODEL --onnx``),
then in one Node process decodes the same integer latents (random levels,
latents drawn around zero) with ``Model.synthesiseMany`` of mnistcodec.js and
with an onnxruntime-web session (WebAssembly, one thread), alternating the two
``--rounds`` times, for one digit at a time and for a batch of ``--batch``.
Prints digits per second (medians) and how many pixels the two disagree on
after rounding to grey levels, writes ``bench/results/js_ort.json`` and the
section of BENCHMARKS.md between ``<!-- js-ort:start -->`` and
``<!-- js-ort:end -->``: the figures behind the library's choice of its own
kernels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, write_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "src" / "mnistcodec" / "web" / "mnistcodec.js"
START, END = "<!-- js-ort:start -->", "<!-- js-ort:end -->"

NODE_SCRIPT = r"""
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
const [library, ort, modelPath, onnxPath, batchText, roundsText] = process.argv.slice(2);
const { loadModel } = await import(library);
const runtime = await import(ort + "/dist/ort.node.min.mjs").catch(() => import(ort + "/dist/ort.mjs"));
runtime.env.wasm.numThreads = 1;
const model = await loadModel(readFileSync(modelPath));
const session = await runtime.InferenceSession.create(readFileSync(onnxPath), { executionProviders: ["wasm"] });
const batch = Number(batchText), rounds = Number(roundsText);
const D = model.dims, L = model.tables.length;
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const ks = [], levels = [];
for (let i = 0; i < batch; i++) {
  ks.push(Float64Array.from({ length: D }, () => Math.round((rand() - 0.5) * 6)));
  levels.push(Math.floor(rand() * L));
}
const yHat = new Float32Array(batch * D);
for (let i = 0; i < batch; i++) {
  const table = model.tables[levels[i]];
  for (let j = 0; j < D; j++) {
    const g = model.gains ? model.gains[levels[i] * D + j] : 1;
    yHat[i * D + j] = Math.fround((Math.fround(ks[i][j]) + table.offsets[j]) / g);
  }
}
async function ortDecode(n) {
  const feeds = { y_hat: new runtime.Tensor("float32", yHat.subarray(0, n * D), [n, D]) };
  if (session.inputNames.includes("level")) {
    feeds.level = new runtime.Tensor("int64", BigInt64Array.from(levels.slice(0, n), BigInt), [n]);
  }
  const out = (await session.run(feeds))[session.outputNames[0]].data;
  const pixels = new Uint8Array(n * 784);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.round(out[i] * 255);
    pixels[i] = Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, v));
  }
  return pixels;
}
const ownDecode = (n) => model.synthesiseMany(ks.slice(0, n), levels.slice(0, n));
const result = { own: { one: [], batch: [] }, ort: { one: [], batch: [] } };
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of [["own", ownDecode], ["ort", ortDecode]]) {
    let t = performance.now();
    for (let i = 0; i < 20; i++) await fn(1);
    result[name].one.push(20 / ((performance.now() - t) / 1000));
    t = performance.now();
    await fn(batch);
    result[name].batch.push(batch / ((performance.now() - t) / 1000));
  }
}
const own = ownDecode(batch), other = await ortDecode(batch);
let differ = 0, maxDiff = 0;
own.forEach((p, i) => {
  const d = Math.abs(p - other[i]);
  if (d) differ++;
  maxDiff = Math.max(maxDiff, d);
});
result.pixels = batch * 784; result.differing = differ; result.maxGreyLevels = maxDiff;
console.log(JSON.stringify(result));
"""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def markdown(result: dict) -> str:
    own, ort = result["own"], result["ort"]
    return "\n".join(
        [
            START,
            "### mnistcodec.js's kernels against onnxruntime-web",
            "",
            f"Written by `python bench/js_ort.py` (`bench/results/js_ort.json`): the synthesis of "
            f"`{result['model']}` in Node {result['node']}, mnistcodec.js's own float32 kernels against "
            f"onnxruntime-web {result['ort_version']} (WebAssembly, one thread) on the exported "
            f"`synthesis.onnx`, the same latents, medians of {result['rounds']} alternating rounds; "
            f"{result['cpu']}, load average {result['load']}.",
            "",
            "| synthesis | one digit at a time, digits/s | a batch of "
            f"{result['batch']}, digits/s |",
            "| --- | --- | --- |",
            f"| mnistcodec.js (own kernels) | {median(own['one']):.0f} | {median(own['batch']):.0f} |",
            f"| onnxruntime-web (wasm) | {median(ort['one']):.0f} | {median(ort['batch']):.0f} |",
            "",
            f"Pixels that differ after rounding: {result['differing']} of {result['pixels']} "
            f"(at most {result['maxGreyLevels']} grey level(s)). onnxruntime-web decodes "
            f"{median(ort['batch']) / median(own['batch']):.1f}x faster in batches and "
            f"{median(ort['one']) / median(own['one']):.1f}x one digit at a time. The library still "
            "runs its own kernels: it needs nothing installed beyond its one module, the export "
            "works with Python alone, and its float32 arithmetic is the spec's. Shipping "
            "onnxruntime-web's WebAssembly (about 10 MB, from npm at setup) with the export is the "
            "measured way to faster decoding.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ort", required=True, help="the onnxruntime-web package folder")
    parser.add_argument("--model", default="vr-mse")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "js_ort.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    ort = Path(args.ort).resolve()
    from mnistcodec.coding.zoo import resolve_model  # lazy: PyTorch

    model_path = resolve_model(args.model).path
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "onnx"
        subprocess.run(
            [sys.executable, "-m", "mnistcodec", "export", args.model, "--onnx", str(export)],
            check=True,
            capture_output=True,
        )
        script = Path(tmp) / "bench.mjs"
        script.write_text(NODE_SCRIPT)
        proc = subprocess.run(
            ["node", str(script), LIBRARY.as_uri(), ort.as_uri(), str(model_path)]
            + [str(export / "synthesis.onnx"), str(args.batch), str(args.rounds)],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    package = json.loads((ort / "package.json").read_text())
    cpu = cpu_name()
    load = Path("/proc/loadavg").read_text().split()[0]
    result.update(
        model=args.model,
        node=node,
        ort_version=package["version"],
        batch=args.batch,
        rounds=args.rounds,
        cpu=cpu,
        load=load,
    )
    for name in ("own", "ort"):
        print(
            f"{name}: {median(result[name]['one']):.0f} digits/s one at a time, "
            f"{median(result[name]['batch']):.0f} in batches of {args.batch}"
        )
    print(f"pixels differing: {result['differing']} of {result['pixels']}")
    write_outputs(result, args.json, args.markdown, START, END, markdown(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
