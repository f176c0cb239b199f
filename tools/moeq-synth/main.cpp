// moeq-synth: write a seeded bf16 Hugging Face checkpoint with the shapes of a real MoE model
// (qwen3-30b-a3b, mixtral-8x7b), sharded as transformers saves it, to run the pipeline at
// real scale (docs/scale.md).
#include <cstdio>
#include <string>

#include "moeq/base/file_util.h"
#include "moeq/checkpoint/synth.h"
#include "tool_main.h"

namespace {

// "5GB", "500MB", "4GiB" or plain bytes.
bool ParseBytes(std::string text, uint64_t* out) {
  double mult = 1;
  auto strip = [&](const char* suffix, double m) {
    const std::string s(suffix);
    if (text.size() > s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0) {
      text.resize(text.size() - s.size());
      mult = m;
      return true;
    }
    return false;
  };
  strip("GiB", 1024.0 * 1024 * 1024) || strip("MiB", 1024.0 * 1024) || strip("KiB", 1024.0) ||
      strip("GB", 1e9) || strip("MB", 1e6) || strip("KB", 1e3) || strip("B", 1);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || v <= 0) return false;
  *out = static_cast<uint64_t>(v * mult);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  moeq::SynthOptions o;
  std::string out_dir, shard_size = "5GB";
  bool print_config = false;
  return moeq::tool::RunTool(
      argc, argv, "moeq-synth",
      "Write a seeded bf16 checkpoint with the shapes of a real MoE model",
      [&](CLI::App& app) {
        app.add_option("--preset", o.preset, "Architecture: qwen3-30b-a3b or mixtral-8x7b")
            ->check(CLI::IsMember({"qwen3-30b-a3b", "mixtral-8x7b"}));
        app.add_option("-o,--output", out_dir, "Output model directory");
        app.add_option("--layers", o.layers, "Decoder layers (default: the preset's)");
        app.add_option("--seed", o.seed, "Seed of the weights");
        app.add_option("--shard-size", shard_size,
                       "Largest shard, e.g. 5GB (Hugging Face's default), 500MB");
        app.add_option("--hidden", o.hidden, "Override: hidden size");
        app.add_option("--heads", o.heads, "Override: attention heads");
        app.add_option("--kv-heads", o.kv_heads, "Override: key/value heads");
        app.add_option("--head-dim", o.head_dim, "Override: head dimension");
        app.add_option("--experts", o.experts, "Override: routed experts per layer");
        app.add_option("--top-k", o.top_k, "Override: experts per token");
        app.add_option("--moe-ff", o.moe_ff, "Override: expert width");
        app.add_option("--vocab", o.vocab,
                       "Override: vocabulary size (drops the bundled tokenizer)");
        app.add_option("--tokenizer", o.tokenizer_dir,
                       "Copy tokenizer.json/tokenizer_config.json from this directory");
        app.add_flag("--print-config", print_config, "Print the config.json and write nothing");
      },
      [&](const moeq::tool::ToolContext& ctx) -> moeq::Status {
        o.threads = ctx.threads;
        o.force = ctx.force;
        if (!ParseBytes(shard_size, &o.shard_bytes)) {
          return moeq::Status::InvalidArgument("--shard-size '" + shard_size +
                                               "': expected bytes such as 5GB or 500MB");
        }
        if (print_config) {
          MOEQ_ASSIGN_OR_RETURN(std::string c, moeq::SynthConfigJson(o));
          std::fwrite(c.data(), 1, c.size(), stdout);
          return moeq::Status::Ok();
        }
        if (out_dir.empty()) return moeq::Status::InvalidArgument("-o/--output is required");
        MOEQ_ASSIGN_OR_RETURN(moeq::SynthSummary s, moeq::WriteSynthCheckpoint(out_dir, o));
        nlohmann::json j = {{"dir", s.dir},
                            {"preset", o.preset},
                            {"seed", o.seed},
                            {"tensors", s.tensors},
                            {"parameters", s.parameters},
                            {"bytes", s.bytes},
                            {"shards", s.shard_files},
                            {"tokenizer", s.tokenizer},
                            {"seconds", s.seconds}};
        const std::string text = moeq::DumpJson(j);
        std::fwrite(text.data(), 1, text.size(), stdout);
        return moeq::Status::Ok();
      });
}
