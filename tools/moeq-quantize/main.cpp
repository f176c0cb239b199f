// moeq-quantize: writes a mixed-precision quantized checkpoint (MLX safetensors) from a model
// directory and an allocation.json, or with one uniform format.
#include "moeq-quantize/quantize_command.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  moeq::QuantizeCommandOptions o;
  return moeq::tool::RunTool(
      argc, argv, "moeq-quantize",
      "Write a quantized checkpoint (MLX safetensors or GGUF) from an allocation or a uniform "
      "format",
      [&](CLI::App& app) {
        app.footer(
            "Examples:\n  moeq-quantize models/tiny-qwen3moe --allocation allocation.json -o "
            "out/q\n\n  moeq-quantize models/tiny-qwen3moe --uniform 4 --group 64 -o out/q4g64   # "
            "routers 8-bit, as mlx-lm\n\n  moeq-quantize models/tiny-qwen3moe --allocation "
            "allocation.json --format gguf -o out/model.gguf\n\n  moeq-quantize "
            "models/tiny-qwen3moe --format gguf --gguf-type q4_K -o "
            "out/q4_K.gguf\n\nDocumentation: README.md and docs/ of the moeq sources; man "
            "moeq-quantize");
        app.add_option("model", o.model_dir, "Model directory (Hugging Face layout)")->required();
        app.add_option(
               "-o,--output", o.output,
               "Output directory (mlx) or .gguf file (gguf); --force replaces an existing one")
            ->required();
        auto* alloc =
            app.add_option("--allocation", o.allocation, "allocation.json from moeq-allocate");
        auto* uni =
            app.add_option("--uniform", o.uniform_bits,
                           "Quantize every quantizable tensor with BITS (2,3,4,5,6,8; 16 = keep "
                           "16-bit, 32 = f32), following mlx-lm's MoE rule: routers (mlp.gate) and "
                           "shared-expert gates stay at 8 bits, group 64 (see --uniform-all)");
        app.add_flag("--uniform-all", o.uniform_all,
                     "With --uniform: no mlx-lm rule; routers are quantized at BITS like every "
                     "quantizable tensor (the [1, hidden] shared-expert gate then stays 16-bit)");
        alloc->excludes(uni);
        app.add_option("--group", o.group_size, "Group size for --uniform (32, 64, 128)");
        app.add_option("--format", o.format, "Output format: mlx (safetensors) or gguf")
            ->check(CLI::IsMember({"mlx", "gguf"}));
        app.add_flag("--ignore-target", o.ignore_target,
                     "Write an allocation made with moeq-allocate --target X as another target "
                     "(its byte budget then does not hold; refused without this flag)");
        app.add_flag("--mlx-compatible", o.mlx_compatible,
                     "Stack experts into mlx-lm's switch_mlp tensors, one format per layer and "
                     "projection (the highest precision among its experts)");
        app.add_option("--stats", o.stats,
                       "activation_stats.safetensors from moeq-profile (--gram for gptq): needed "
                       "by weighted/gptq encoders");
        app.add_option("--encoder", o.encoder,
                       "Encoder of every quantized tensor: rtn, weighted or gptq (default: the "
                       "allocation's, else rtn)");
        app.add_option("--expert-encoder", o.expert_encoder,
                       "Encoder of the routed-expert tensors only (applied after --encoder)");
        app.add_option("--gptq-damp", o.encoder_options.gptq_damp,
                       "gptq dampening: lambda = damp * mean(diag H)");
        app.add_option("--gptq-block", o.encoder_options.gptq_block, "gptq lazy-batch columns");
        app.add_flag("--gptq-act-order", o.encoder_options.gptq_act_order,
                     "gptq: process columns in decreasing diag H");
        app.add_option("--weighted-steps", o.encoder_options.weighted_steps,
                       "weighted: range-shrink steps per side of the scale/bias search");
        app.add_option("--gguf-type", o.gguf_type,
                       "With --format gguf: store every quantized tensor as this ggml type (q4_0, "
                       "q4_1, q5_0, q5_1, q8_0, q2_K..q6_K), like llama-quantize's TYPE; rows that "
                       "do not fit its block fall back as docs/gguf.md says");
        app.add_option("--eval", o.eval,
                       "eval.json (moeq-eval of the quantized model) whose quality figures go into "
                       "the model card");
        app.add_flag("--allow-model-mismatch", o.allow_model_mismatch,
                     "Use an allocation made for another model (warn only)");
        app.add_flag("--no-model-card", o.no_model_card,
                     "Do not write the model card (README.md in the output directory; "
                     "MODEL.README.md beside a .gguf)");
        app.add_option("--max-shard-size", o.max_shard_size,
                       "Largest safetensors shard (data bytes), e.g. 5GB, 500MB");
      },
      [&](const moeq::tool::ToolContext& ctx) { return moeq::RunQuantize(o, ctx.artifact); });
}
