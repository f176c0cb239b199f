// moeq-eval: perplexity of a model on a text, KL divergence from a reference model, and a CI
// gate that exits 3 when quality got worse than allowed.
#include "moeq-eval/eval_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::EvalCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-eval",
      "Perplexity, KL divergence from a reference model, and a CI quality gate",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-eval models/tiny-qwen3moe --text data/moe-corpus/valid.txt -o "
            "eval.json\n\n  moeq-eval out/q --text data/moe-corpus/valid.txt --reference "
            "models/tiny-qwen3moe \\\n      --baseline eval.json --max-ppl-delta 2% --max-kl 0.05  "
            " # CI gate: exit 3 when exceeded\n\n  moeq-eval out/model.gguf --text "
            "data/moe-corpus/valid.txt -o eval-gguf.json   # a GGUF file\n\nDocumentation: "
            "README.md and docs/ of the moeq sources; man moeq-eval");
        app.add_option("model", o.model_dir,
                       "Model directory (Hugging Face layout), or a .gguf file written by "
                       "moeq-quantize --format gguf")
            ->required();
        auto* text = app.add_option("--text", o.input.text_file,
                                    "Text file, tokenized with the model's tokenizer.json (a .gguf "
                                    "model: its tokenizer.ggml metadata)");
        auto* toks = app.add_option("--tokens", o.input.tokens_file,
                                    "Pre-tokenized ids (JSON list or .u32/.u16 binary)");
        text->excludes(toks);
        app.add_option("--protocol", o.protocol,
                       "Preset: reference (512, all but first), mint (2048 or max, 256 windows, "
                       "seed 42), llama (512, second half, BOS)")
            ->check(CLI::IsMember({"reference", "mint", "llama"}));
        app.add_option("--context", o.context, "Tokens per window (overrides the preset)");
        app.add_option("--stride", o.stride, "Distance between window starts (default: context)");
        app.add_option("--scored", o.scored,
                       "Scored tokens: all-but-first or second-half (overrides the preset)");
        app.add_option("--chunks", o.chunks, "Evaluate at most N windows");
        app.add_option("--samples", o.samples,
                       "Draw N windows at random (0 = all in order; overrides the preset)");
        app.add_option("--seed", o.seed, "Seed for --samples");
        app.add_option("--reference", o.reference_dir,
                       "Reference model directory: report KL, top-1 agreement, ΔPPL");
        app.add_option("--reference-logits", o.reference_logits,
                       "Saved reference distribution (from --save-logits): report KL, top-1 "
                       "agreement, ΔPPL against it");
        app.add_option("--save-logits", o.save_logits,
                       "Save this model's distribution on the evaluated windows (safetensors) as a "
                       "reference for later runs");
        app.add_option(
            "--save-logits-top-k", o.save_logits_top_k,
            "Log-probabilities kept per scored token in --save-logits (0 = whole vocabulary)");
        app.add_option("-o,--output", o.output,
                       "Write eval.json here (default: print it to stdout)");
        app.add_option("--baseline", o.baseline, "eval.json of the baseline for --max-ppl-delta");
        app.add_option("--max-ppl-delta", o.max_ppl_delta,
                       "Gate: fail (exit 3) when perplexity exceeds the baseline by more than this "
                       "(2% or 0.5)");
        app.add_option("--max-kl", o.max_kl,
                       "Gate: fail (exit 3) when mean KL from --reference exceeds this");
        auto* packed = app.add_flag(
            "--packed", o.packed,
            "Run quantized tensors from their packed codes (no dequantized copy in memory)");
        app.add_flag("--int8-activations", o.int8_activations,
                     "With --packed: multiply packed weights by int8-quantized activations "
                     "(faster, approximate, as llama.cpp; docs/inference.md)")
            ->needs(packed);
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunEval(o, ctx.artifact); });
}
