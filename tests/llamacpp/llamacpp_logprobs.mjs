// Loads GGUF files in llama.cpp through node-llama-cpp (its prebuilt CPU libraries), evaluates
// a fixed token sequence in each and tokenizes test strings. Usage:
//   node llamacpp_logprobs.mjs JOB.json > OUT.json
// JOB.json: {"models": ["a.gguf", ...], "ids": [token ids], "strings": ["text", ...]}
// OUT.json: {"node_llama_cpp": version, "llama_cpp": release, "models": [{"path": ...,
//   "positions": [{"top": [[id, log p], ...]}, ...]   (every token with p > 0, best first)
//   "tokenized": [[ids], ...],                         (no BOS, special tokens parsed)
//   "tokenized_nfc": [[ids], ...], "nfc_changes": [bool, ...]}, ...]}  (the same on NFC(text))
// Used by tests/llamacpp/llamacpp_conformance_test.cpp; exits 1 with a message on any error.
import fs from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

async function evaluate(llama, modelPath, ids, strings) {
  const model = await llama.loadModel({modelPath, gpuLayers: 0});
  const context = await model.createContext({contextSize: Math.max(64, ids.length + 8), batchSize: 512, threads: 1,
                                             sequences: 1});
  const sequence = context.getSequence();
  // Every input token asks for the full next-token distribution: temperature 1 and no top-k,
  // top-p or min-p truncation, so the probabilities are the model's softmax.
  const opts = {generateNext: {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1}}};
  const results = await sequence.controlledEvaluate(ids.map((t) => [t, opts]));
  const positions = [];
  for (let i = 0; i < ids.length; ++i) {
    const probs = results[i]?.next?.probabilities;
    if (!probs) throw new Error(`${modelPath}: no probabilities for position ${i}`);
    const top = [];
    for (const [tok, p] of probs) if (p > 0) top.push([tok, Math.log(p)]);
    positions.push({top});
  }
  const tokenized = strings.map((s) => Array.from(model.tokenize(s, true)));
  // llama.cpp does not apply a tokenizer.json's NFC normalizer; the test compares these too.
  const tokenized_nfc = strings.map((s) => Array.from(model.tokenize(s.normalize("NFC"), true)));
  const nfc_changes = strings.map((s) => s.normalize("NFC") !== s);
  await context.dispose();
  await model.dispose();
  return {path: modelPath, positions, tokenized, tokenized_nfc, nfc_changes};
}

async function main() {
  const [jobPath] = process.argv.slice(2);
  if (!jobPath) throw new Error("usage: llamacpp_logprobs.mjs JOB.json");
  const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
  const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
  const models = [];
  for (const m of job.models) models.push(await evaluate(llama, m, job.ids, job.strings ?? []));
  const pkg = new URL("./node_modules/node-llama-cpp/package.json", import.meta.url);
  const version = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
  process.stdout.write(JSON.stringify({node_llama_cpp: version, llama_cpp: llama.llamaCppRelease?.release ?? "",
                                       models}) + "\n");
  await llama.dispose();
}

main().catch((e) => {
  process.stderr.write(`llamacpp_logprobs: ${e?.stack ?? e}\n`);
  process.exit(1);
});
