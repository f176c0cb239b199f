// tokenizer.ggml.* metadata from a Hugging Face tokenizer.json (+ tokenizer_config.json,
// config.json), the way convert_hf_to_gguf.py fills it (docs/formats.md §3.1, §4.5):
//   byte-level BPE (GPT-2/Qwen)  → model "gpt2", tokens, token_type, merges, pre from the
//                                   pre-tokenizer regex ("qwen2", "llama-bpe", "gpt-2", "default");
//   SentencePiece-style BPE      → model "llama", tokens, scores, token_type (BYTE for <0xNN>).
// Added tokens: special → CONTROL, others → USER_DEFINED; ids without a token → "[PAD<i>]" UNUSED.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <optional>

#include "export/gguf_internal.h"
#include "moeq/base/file_util.h"

namespace moeq::gguf_internal {
namespace {

// llama.cpp's token types: the one table of moeq/formats/gguf.h.
constexpr int kNormal = static_cast<int>(GgufTokenType::kNormal);
constexpr int kUnknown = static_cast<int>(GgufTokenType::kUnknown);
constexpr int kControl = static_cast<int>(GgufTokenType::kControl);
constexpr int kUserDefined = static_cast<int>(GgufTokenType::kUserDefined);
constexpr int kUnused = static_cast<int>(GgufTokenType::kUnused);
constexpr int kByte = static_cast<int>(GgufTokenType::kByte);

/// Does the JSON tree of a normalizer/pre-tokenizer/decoder contain an object of `type`?
bool ContainsType(const nlohmann::json& j, std::string_view type) {
  if (j.is_object()) {
    auto it = j.find("type");
    if (it != j.end() && it->is_string() && it->get<std::string>() == type) return true;
    for (const auto& [k, v] : j.items()) {
      if (ContainsType(v, type)) return true;
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (ContainsType(v, type)) return true;
    }
  }
  return false;
}

/// The first Split regex of a pre-tokenizer tree, or "".
std::string SplitRegex(const nlohmann::json& j) {
  if (j.is_object()) {
    if (j.value("type", "") == "Split" && j.contains("pattern") && j["pattern"].is_object() &&
        j["pattern"].contains("Regex") && j["pattern"]["Regex"].is_string()) {
      return j["pattern"]["Regex"].get<std::string>();
    }
    for (const auto& [k, v] : j.items()) {
      std::string r = SplitRegex(v);
      if (!r.empty()) return r;
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      std::string r = SplitRegex(v);
      if (!r.empty()) return r;
    }
  }
  return "";
}

bool ByteLevelUsesRegex(const nlohmann::json& j) {
  if (j.is_object()) {
    if (j.value("type", "") == "ByteLevel") return j.value("use_regex", true);
    for (const auto& [k, v] : j.items()) {
      if (ByteLevelUsesRegex(v)) return true;
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (ByteLevelUsesRegex(v)) return true;
    }
  }
  return false;
}

/// llama.cpp pre-tokenizer name for a byte-level BPE tokenizer.
std::string PreTokenizerName(const nlohmann::json& pre) {
  const std::string regex = SplitRegex(pre);
  if (!regex.empty()) {
    if (regex.find("\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
    if (regex.find("(?i:'s|'t|'re|'ve|'m|'ll|'d)") != std::string::npos &&
        regex.find("\\p{N}|") != std::string::npos) {
      return "qwen2";
    }
    return "default";
  }
  if (ByteLevelUsesRegex(pre)) return "gpt-2";
  return "default";
}

/// Token content of a tokenizer_config.json special-token field (string or {"content": ...}).
std::optional<std::string> TokenField(const nlohmann::json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<int64_t> ConfigId(const nlohmann::json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer())
    return (*it)[0].get<int64_t>();
  return std::nullopt;
}

}  // namespace

Status AddTokenizerMetadata(const Checkpoint& ckpt, int64_t n_vocab, KvList* kv, bool* found) {
  *found = false;
  const std::string path = ckpt.dir() + "/tokenizer.json";
  if (!std::filesystem::exists(path)) return Status::Ok();
  MOEQ_ASSIGN_OR_RETURN(const nlohmann::json tok, ReadJsonFile(path));
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object()) {
    return Status::Corruption(path + ": missing object 'model'");
  }
  const nlohmann::json& model = tok["model"];
  const std::string model_type = model.value("type", "BPE");
  if (model_type != "BPE") {
    return Status::Unsupported(path + ": model.type '" + model_type +
                               "' (only BPE tokenizers can be written to GGUF)");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Status::Corruption(path + ": model.vocab is not an object");
  }
  std::map<int64_t, std::string> by_id;
  std::map<std::string, int64_t, std::less<>> by_text;
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      return Status::Corruption(path + ": model.vocab['" + text +
                                "'] is not a non-negative integer");
    }
    by_id[id.get<int64_t>()] = text;
    by_text[text] = id.get<int64_t>();
  }
  if (by_id.empty()) return Status::Ok();

  std::map<int64_t, bool> added_special;  // id -> special
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const auto& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string()) {
        return Status::Corruption(path +
                                  ": added_tokens entry without integer 'id' and string 'content'");
      }
      const int64_t id = a["id"].get<int64_t>();
      by_id[id] = a["content"].get<std::string>();
      by_text[a["content"].get<std::string>()] = id;
      added_special[id] = a.value("special", false);
    }
  }

  const nlohmann::json pre = tok.value("pre_tokenizer", nlohmann::json());
  const nlohmann::json decoder = tok.value("decoder", nlohmann::json());
  const bool byte_level = ContainsType(pre, "ByteLevel") || ContainsType(decoder, "ByteLevel");
  const bool byte_fallback = model.value("byte_fallback", false);
  if (!byte_level && !byte_fallback && !ContainsType(pre, "Metaspace") &&
      !ContainsType(decoder, "Metaspace") && !ContainsType(decoder, "Replace")) {
    return Status::Unsupported(path +
                               ": BPE tokenizer is neither byte-level nor SentencePiece-style");
  }
  const bool gpt2 = byte_level;

  const int64_t max_id = by_id.rbegin()->first;
  const int64_t n = std::max<int64_t>(n_vocab, max_id + 1);
  if (max_id + 1 > n_vocab) {
    spdlog::warn("gguf: {} has {} tokens but the embedding has {} rows", path, max_id + 1, n_vocab);
  }
  nlohmann::json tokens = nlohmann::json::array(), types = nlohmann::json::array(),
                 scores = nlohmann::json::array();
  std::optional<std::string> unk_text;
  if (model.contains("unk_token") && model["unk_token"].is_string())
    unk_text = model["unk_token"].get<std::string>();
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(kUnused);
      scores.push_back(0.0);
      continue;
    }
    const std::string& text = it->second;
    tokens.push_back(text);
    int type = kNormal;
    auto ai = added_special.find(i);
    if (ai != added_special.end()) {
      type = ai->second ? kControl : kUserDefined;
    } else if (!gpt2 && text.size() == 6 && text.rfind("<0x", 0) == 0 && text.back() == '>') {
      type = kByte;
    }
    if (unk_text && text == *unk_text) type = kUnknown;
    types.push_back(type);
    scores.push_back(type == kNormal ? -static_cast<double>(i) : 0.0);
  }

  AddString(kv, "tokenizer.ggml.model", gpt2 ? "gpt2" : "llama");
  AddString(kv, "tokenizer.ggml.pre", gpt2 ? PreTokenizerName(pre) : "default");
  AddArray(kv, "tokenizer.ggml.tokens", GgufValueType::kString, std::move(tokens));
  if (!gpt2) AddArray(kv, "tokenizer.ggml.scores", GgufValueType::kF32, std::move(scores));
  AddArray(kv, "tokenizer.ggml.token_type", GgufValueType::kI32, std::move(types));
  if (gpt2) {
    nlohmann::json merges = nlohmann::json::array();
    if (model.contains("merges") && model["merges"].is_array()) {
      for (const auto& m : model["merges"]) {
        if (m.is_string()) {
          merges.push_back(m.get<std::string>());
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        } else {
          return Status::Corruption(path +
                                    ": model.merges entry is neither \"a b\" nor [\"a\", \"b\"]");
        }
      }
    }
    AddArray(kv, "tokenizer.ggml.merges", GgufValueType::kString, std::move(merges));
  }

  // Special ids: tokenizer_config.json tokens, else config.json ids.
  nlohmann::json tcfg = nlohmann::json::object();
  const std::string tcfg_path = ckpt.dir() + "/tokenizer_config.json";
  if (std::filesystem::exists(tcfg_path)) {
    MOEQ_ASSIGN_OR_RETURN(tcfg, ReadJsonFile(tcfg_path));
    if (!tcfg.is_object()) return Status::Corruption(tcfg_path + ": not a JSON object");
  }
  const nlohmann::json& cfg = ckpt.config().raw;
  struct Special {
    const char* tcfg_key;
    const char* cfg_key;
    const char* gguf_key;
  };
  const Special specials[] = {{"bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"},
                              {"eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"},
                              {"unk_token", nullptr, "tokenizer.ggml.unknown_token_id"},
                              {"pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"}};
  for (const Special& s : specials) {
    std::optional<int64_t> id;
    if (auto text = TokenField(tcfg, s.tcfg_key)) {
      auto it = by_text.find(*text);
      if (it != by_text.end()) id = it->second;
    }
    if (!id && s.cfg_key) id = ConfigId(cfg, s.cfg_key);
    if (!id && std::string_view(s.tcfg_key) == "unk_token" && unk_text) {
      auto it = by_text.find(*unk_text);
      if (it != by_text.end()) id = it->second;
    }
    if (id && *id >= 0 && *id < n) AddU32(kv, s.gguf_key, static_cast<uint64_t>(*id));
  }
  bool add_bos = !gpt2;
  if (tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean())
    add_bos = tcfg["add_bos_token"].get<bool>();
  AddBool(kv, "tokenizer.ggml.add_bos_token", add_bos);
  if (tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean()) {
    AddBool(kv, "tokenizer.ggml.add_eos_token", tcfg["add_eos_token"].get<bool>());
  }
  if (tcfg.contains("chat_template") && tcfg["chat_template"].is_string()) {
    AddString(kv, "tokenizer.chat_template", tcfg["chat_template"].get<std::string>());
  }
  *found = true;
  return Status::Ok();
}

}  // namespace moeq::gguf_internal
