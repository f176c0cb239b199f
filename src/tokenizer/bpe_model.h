// The BPE model: a vocabulary plus either merge ranks (Hugging Face "BPE") or token scores
// (SentencePiece as llama.cpp runs it: merge the adjacent pair whose concatenation is the
// best-scoring vocabulary token). Words are cached.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "moeq/base/status.h"

namespace moeq::tokenizer_internal {

/// Largest accepted token id + 1 (guards against absurd ids in malformed files).
inline constexpr int64_t kMaxVocabSize = int64_t{1} << 24;

class BpeModel {
 public:
  /// Parses tokenizer.json "model" (type BPE). `where` prefixes error messages ("tokenizer.json:
  /// model").
  static Result<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                    const std::string& where);
  /// A SentencePiece vocabulary merged by score; unknown characters fall back to "<0xXX>" byte
  /// tokens, then to the single-byte token, then to `unk_id`.
  static Result<std::unique_ptr<BpeModel>> FromScores(std::vector<std::string> tokens,
                                                      std::vector<float> scores,
                                                      std::optional<int32_t> unk_id,
                                                      const std::string& where);

  /// Appends the ids of one pre-tokenized word.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  /// Token strings by id ("" where the vocabulary has no id).
  const std::vector<std::string>& tokens() const { return tokens_; }
  std::optional<int32_t> Find(std::string_view token) const;
  std::optional<int32_t> unk_id() const { return unk_id_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  BpeModel() = default;
  void BuildIndex();
  void TokenizeByRanks(std::string_view word, std::vector<int32_t>* out) const;
  void TokenizeByScores(std::string_view word, std::vector<int32_t>* out) const;
  void AppendUnknown(std::string_view ch, bool* last_was_unk, std::vector<int32_t>* out) const;

  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  bool by_scores_ = false;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::unordered_map<std::string_view, int32_t> ids_;  // views into tokens_
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // "<0xXX>" tokens, -1 when absent
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;

  /// Hash accepting std::string and std::string_view alike (heterogeneous lookup).
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, WordHash, std::equal_to<>> cache_;
};

}  // namespace moeq::tokenizer_internal
