// llama.cpp's side of bench/speed/llamacpp_speed.sh: prefill and decode tokens/s of one GGUF on
// given token ids, through node-llama-cpp's prebuilt CPU llama.cpp (installed by
// scripts/install-llamacpp.sh under tests/llamacpp/node_modules).
//
//   node llamacpp_speed.mjs MODEL.gguf IDS.json [--tokens N] [--reps N] [--threads N]
//                           [--decode-prompt N] [--decode N]
//
// IDS.json: a JSON array of token ids (bench_speed --dump-ids writes it). Prefill = one
// evaluation of the first N ids in a fresh sequence (context N, batch N: one llama_decode of
// the whole prompt; llama.cpp computes the logits of the last token only); the history is
// cleared (untimed) before each repetition, and one untimed warm-up evaluation runs first, so load
// time is excluded. Decode = a prompt of --decode-prompt ids (untimed), then --decode
// evaluations of one id each (KV cache), timed together; each includes node-llama-cpp's per-call
// overhead (a JavaScript promise round trip), so it is an upper bound on llama.cpp's own time.
// Prints one JSON object: {"prefill_s": [per-rep wall seconds], "prefill_cpu_s": [per-rep CPU
// seconds of the process, all threads], "decode_s_per_token", "decode_cpu_s_per_token", ...}.
import fs from "node:fs";

const here = new URL(".", import.meta.url);
const pkgDir = new URL("../../tests/llamacpp/node_modules/node-llama-cpp/", here);
const {getLlama, LlamaLogLevel} = await import(new URL("dist/index.js", pkgDir).href);

function parse(argv) {
  const o = {tokens: 512, reps: 5, threads: 2, decodePrompt: 32, decode: 0, pos: []};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return Number(argv[++i]);
    };
    if (a === "--tokens") o.tokens = next();
    else if (a === "--reps") o.reps = next();
    else if (a === "--threads") o.threads = next();
    else if (a === "--decode-prompt") o.decodePrompt = next();
    else if (a === "--decode") o.decode = next();
    else if (a.startsWith("--")) throw new Error(`unknown argument ${a}`);
    else o.pos.push(a);
  }
  if (o.pos.length !== 2) throw new Error("usage: llamacpp_speed.mjs MODEL.gguf IDS.json [options]");
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const [modelPath, idsPath] = o.pos;
  const ids = JSON.parse(fs.readFileSync(idsPath, "utf8"));
  const need = Math.max(o.tokens, o.decodePrompt + o.decode);
  if (!Array.isArray(ids) || ids.length < need)
    throw new Error(`${idsPath}: ${ids.length} ids, ${need} are needed`);
  const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error,
                                maxThreads: o.threads});
  const model = await llama.loadModel({modelPath, gpuLayers: 0});
  const ctxSize = Math.max(o.tokens, o.decodePrompt + o.decode);
  const context = await model.createContext({contextSize: ctxSize, batchSize: o.tokens,
                                             threads: {ideal: o.threads, min: o.threads},
                                             sequences: 1});
  const sequence = context.getSequence();
  const prompt = ids.slice(0, o.tokens);
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

  await sequence.evaluateWithoutGeneratingNewTokens(prompt);  // warm-up
  const prefill_s = [], prefill_cpu_s = [];
  for (let r = 0; r < o.reps; ++r) {
    await sequence.clearHistory();
    const t0 = now(), c0 = cpu();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt);
    prefill_s.push(now() - t0);
    prefill_cpu_s.push(cpu() - c0);
  }
  const decode_s_per_token = [], decode_cpu_s_per_token = [];
  if (o.decode > 0) {
    for (let r = 0; r <= o.reps; ++r) {
      await sequence.clearHistory();
      await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(0, o.decodePrompt));
      const t0 = now(), c0 = cpu();
      for (let i = 0; i < o.decode; ++i)
        await sequence.evaluateWithoutGeneratingNewTokens([ids[o.decodePrompt + i]]);
      if (r > 0) {  // rep 0 warms up
        decode_s_per_token.push((now() - t0) / o.decode);
        decode_cpu_s_per_token.push((cpu() - c0) / o.decode);
      }
    }
  }
  const pkg = JSON.parse(fs.readFileSync(new URL("package.json", pkgDir), "utf8"));
  process.stdout.write(JSON.stringify({
    bench: "llamacpp_speed", model: modelPath, node_llama_cpp: pkg.version,
    llama_cpp: llama.llamaCppRelease?.release ?? "", threads: o.threads,
    flash_attention: context.flashAttention, batch_size: context.batchSize,
    context_size: context.contextSize, tokens: o.tokens, prefill_s, prefill_cpu_s,
    decode_prompt: o.decodePrompt, decode_steps: o.decode, decode_s_per_token,
    decode_cpu_s_per_token}) + "\n");
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((e) => {
  process.stderr.write(`llamacpp_speed: ${e?.stack ?? e}\n`);
  process.exit(1);
});
