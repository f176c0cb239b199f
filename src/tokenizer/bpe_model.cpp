// BPE merging: rank-ordered merges over a linked list of symbols with a heap (O(n log n) per word),
// score-ordered merges for SentencePiece, and a bounded word cache shared by all threads.
#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "moeq/base/json_reader.h"
#include "tokenizer/unicode_text.h"

namespace moeq::tokenizer_internal {
namespace {

using nlohmann::json;

/// Words longer than this are not cached (rare; keeps the cache small).
constexpr size_t kMaxCachedWordBytes = 256;
/// The cache is cleared when it reaches this many words.
constexpr size_t kMaxCachedWords = 1 << 18;

Result<std::pair<std::string, std::string>> ParseMerge(const json& m, const std::string& where) {
  if (m.is_string()) {
    const std::string& s = m.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 >= s.size() ||
        s.find(' ', space + 1) != std::string::npos) {
      return Status::Corruption(
          where + ": expected \"<left> <right>\" with exactly one space, got \"" + s + "\"");
    }
    return std::make_pair(s.substr(0, space), s.substr(space + 1));
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return Status::Corruption(where + ": expected a string \"a b\" or a pair [\"a\", \"b\"], got " +
                            JsonExcerpt(m));
}

std::string ByteTokenText(int b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

}  // namespace

Result<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model, const std::string& where) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  if (!model.is_object()) return Status::Corruption(where + ": expected an object");
  if (model.contains("type") && model["type"] != "BPE") {
    return Status::Unsupported(where + ".type: model type " + JsonExcerpt(model["type"]) +
                               " is not supported (only BPE)");
  }
  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return Status::Corruption(where + ".vocab: missing or not an object of token -> id");
  }
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab_it->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocabSize) {
      return Status::Corruption(where + ".vocab[\"" + token + "\"]: id must be an integer in [0, " +
                                std::to_string(kMaxVocabSize) + "), got " + JsonExcerpt(id));
    }
    max_id = std::max(max_id, id.get<int64_t>());
  }
  m->tokens_.resize(static_cast<size_t>(max_id + 1));
  std::vector<bool> seen(m->tokens_.size(), false);
  for (const auto& [token, id] : vocab_it->items()) {
    const auto i = static_cast<size_t>(id.get<int64_t>());
    if (seen[i]) {
      return Status::Corruption(where + ".vocab[\"" + token + "\"]: id " + std::to_string(i) +
                                " is already used by \"" + m->tokens_[i] + "\"");
    }
    seen[i] = true;
    m->tokens_[i] = token;
  }

  auto get_bool = [&](const char* key, bool* out) -> Status {
    const auto it = model.find(key);
    if (it == model.end() || it->is_null()) return Status::Ok();
    if (!it->is_boolean())
      return Status::Corruption(where + "." + key + ": expected true or false");
    *out = it->get<bool>();
    return Status::Ok();
  };
  auto get_string = [&](const char* key, std::string* out) -> Status {
    const auto it = model.find(key);
    if (it == model.end() || it->is_null()) return Status::Ok();
    if (!it->is_string()) return Status::Corruption(where + "." + key + ": expected a string");
    *out = it->get<std::string>();
    return Status::Ok();
  };
  MOEQ_RETURN_IF_ERROR(get_bool("fuse_unk", &m->fuse_unk_));
  MOEQ_RETURN_IF_ERROR(get_bool("byte_fallback", &m->byte_fallback_));
  MOEQ_RETURN_IF_ERROR(get_bool("ignore_merges", &m->ignore_merges_));
  MOEQ_RETURN_IF_ERROR(get_string("continuing_subword_prefix", &m->continuing_subword_prefix_));
  MOEQ_RETURN_IF_ERROR(get_string("end_of_word_suffix", &m->end_of_word_suffix_));
  std::string unk_token;
  MOEQ_RETURN_IF_ERROR(get_string("unk_token", &unk_token));
  m->BuildIndex();
  if (!unk_token.empty()) {
    const auto unk = m->Find(unk_token);
    if (!unk)
      return Status::Corruption(where + ".unk_token: \"" + unk_token + "\" is not in model.vocab");
    m->unk_id_ = *unk;
  }

  const auto merges_it = model.find("merges");
  if (merges_it != model.end() && !merges_it->is_null()) {
    if (!merges_it->is_array()) return Status::Corruption(where + ".merges: expected an array");
    m->merges_.reserve(merges_it->size());
    int32_t rank = 0;
    for (const auto& entry : *merges_it) {
      const std::string at = where + ".merges[" + std::to_string(rank) + "]";
      MOEQ_ASSIGN_OR_RETURN(auto pair, ParseMerge(entry, at));
      const auto a = m->Find(pair.first);
      const auto b = m->Find(pair.second);
      if (!a || !b) {
        return Status::Corruption(at + ": \"" + (a ? pair.second : pair.first) +
                                  "\" is not in model.vocab");
      }
      std::string_view right = pair.second;
      const std::string& prefix = m->continuing_subword_prefix_;
      if (!prefix.empty() && right.substr(0, prefix.size()) == prefix)
        right.remove_prefix(prefix.size());
      const std::string merged = pair.first + std::string(right);
      const auto new_id = m->Find(merged);
      if (!new_id)
        return Status::Corruption(at + ": merged token \"" + merged + "\" is not in model.vocab");
      // The first occurrence of a pair wins, as in Hugging Face tokenizers.
      m->merges_.emplace(PairKey(*a, *b), Merge{rank, *new_id});
      ++rank;
    }
  }
  return m;
}

Result<std::unique_ptr<BpeModel>> BpeModel::FromScores(std::vector<std::string> tokens,
                                                       std::vector<float> scores,
                                                       std::optional<int32_t> unk_id,
                                                       const std::string& where) {
  if (tokens.size() != scores.size()) {
    return Status::Corruption(where + ": " + std::to_string(tokens.size()) + " tokens but " +
                              std::to_string(scores.size()) + " scores");
  }
  if (static_cast<int64_t>(tokens.size()) >= kMaxVocabSize)
    return Status::Corruption(where + ": vocabulary too large");
  std::unique_ptr<BpeModel> m(new BpeModel());
  m->by_scores_ = true;
  m->tokens_ = std::move(tokens);
  m->scores_ = std::move(scores);
  m->unk_id_ = unk_id;
  m->BuildIndex();
  return m;
}

void BpeModel::BuildIndex() {
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].empty()) continue;
    // First id wins for duplicate strings (SentencePiece vocabularies can repeat unused pieces).
    ids_.emplace(std::string_view(tokens_[i]), static_cast<int32_t>(i));
  }
  for (int b = 0; b < 256; ++b) {
    const auto id = Find(ByteTokenText(b));
    byte_ids_[static_cast<size_t>(b)] = id ? *id : -1;
  }
}

std::optional<int32_t> BpeModel::Find(std::string_view token) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out->size();
  if (by_scores_) {
    TokenizeByScores(word, out);
  } else {
    TokenizeByRanks(word, out);
  }
  if (cacheable) {
    std::vector<int32_t> ids(out->begin() + static_cast<std::ptrdiff_t>(first), out->end());
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCachedWords) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::AppendUnknown(std::string_view ch, bool* last_was_unk,
                             std::vector<int32_t>* out) const {
  if (byte_fallback_) {
    bool all = true;
    for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all) {
      for (char c : ch) out->push_back(byte_ids_[static_cast<unsigned char>(c)]);
      *last_was_unk = false;
      return;
    }
  }
  if (!unk_id_) return;  // no unknown token: the character is dropped (as Hugging Face does)
  if (fuse_unk_ && *last_was_unk) return;
  out->push_back(*unk_id_);
  *last_was_unk = true;
}

void BpeModel::TokenizeByRanks(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    if (const auto id = Find(word)) {
      out->push_back(*id);
      return;
    }
  }
  // Initial symbols: one per character (prefix/suffix applied), unknown characters resolved.
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool last_was_unk = false;
  const bool affixes = !continuing_subword_prefix_.empty() || !end_of_word_suffix_.empty();
  std::string key;
  for (size_t i = 0; i < word.size();) {
    const size_t len =
        std::min(Utf8SequenceLength(static_cast<unsigned char>(word[i])), word.size() - i);
    std::string_view ch = word.substr(i, len);
    std::string_view lookup = ch;
    if (affixes) {
      key.clear();
      if (i > 0) key += continuing_subword_prefix_;
      key += ch;
      if (i + len == word.size()) key += end_of_word_suffix_;
      lookup = key;
    }
    if (const auto id = Find(lookup)) {
      ids.push_back(*id);
      last_was_unk = false;
    } else {
      AppendUnknown(ch, &last_was_unk, &ids);
    }
    i += len;
  }
  const auto n = static_cast<int32_t>(ids.size());
  if (n < 2 || merges_.empty()) {
    out->insert(out->end(), ids.begin(), ids.end());
    return;
  }

  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    int32_t new_id;
  };
  // Min-heap on (rank, left position): lowest rank first, leftmost first among equal ranks.
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.left > y.left;
  };
  std::vector<int32_t> prev(static_cast<size_t>(n));
  std::vector<int32_t> next(static_cast<size_t>(n));
  std::vector<bool> removed(static_cast<size_t>(n), false);
  for (int32_t i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  std::vector<Candidate> heap;
  heap.reserve(static_cast<size_t>(n));
  auto try_push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = ids[static_cast<size_t>(left)];
    const int32_t b = ids[static_cast<size_t>(right)];
    const auto it = merges_.find(PairKey(a, b));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, a, b, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_push(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    const auto l = static_cast<size_t>(c.left);
    if (removed[l] || next[l] < 0) continue;
    const auto r = static_cast<size_t>(next[l]);
    // A symbol at a given position with a given id always spans the same characters, so equal ids
    // mean the candidate is still current.
    if (ids[l] != c.left_id || ids[r] != c.right_id) continue;
    ids[l] = c.new_id;
    removed[r] = true;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = c.left;
    try_push(prev[l], c.left);
    try_push(c.left, next[l]);
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)])
    out->push_back(ids[static_cast<size_t>(i)]);
}

void BpeModel::TokenizeByScores(std::string_view word, std::vector<int32_t>* out) const {
  // The llama.cpp SentencePiece algorithm: start from characters, repeatedly merge the adjacent
  // pair whose concatenation is the highest-scoring token (leftmost among equal scores).
  struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t start;
    uint32_t len;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const size_t len =
        std::min(Utf8SequenceLength(static_cast<unsigned char>(word[i])), word.size() - i);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, i + len < word.size() ? index + 1 : -1, static_cast<uint32_t>(i),
                       static_cast<uint32_t>(len)});
    i += len;
  }
  struct Bigram {
    int32_t left;
    int32_t right;
    float score;
    uint32_t size;
  };
  auto lower = [](const Bigram& l, const Bigram& r) {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(lower)> queue(lower);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<size_t>(left)];
    const Symbol& r = symbols[static_cast<size_t>(right)];
    const std::string_view text = word.substr(l.start, l.len + r.len);
    const auto id = Find(text);
    if (!id) return;
    queue.push(
        {left, right, scores_[static_cast<size_t>(*id)], static_cast<uint32_t>(text.size())});
  };
  for (size_t i = 1; i < symbols.size(); ++i)
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[static_cast<size_t>(b.left)];
    Symbol& r = symbols[static_cast<size_t>(b.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  bool last_was_unk = false;
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& s = symbols[static_cast<size_t>(i)];
    const std::string_view text = word.substr(s.start, s.len);
    if (const auto id = Find(text)) {
      out->push_back(*id);
      last_was_unk = false;
      continue;
    }
    // Not a token (only single characters can be): bytes, as llama.cpp's byte_to_token does.
    for (char c : text) {
      const int32_t byte_id = byte_ids_[static_cast<unsigned char>(c)];
      if (byte_id >= 0) {
        out->push_back(byte_id);
        last_was_unk = false;
      } else if (const auto single = Find(std::string_view(&c, 1))) {
        out->push_back(*single);
        last_was_unk = false;
      } else if (unk_id_ && !(fuse_unk_ && last_was_unk)) {
        out->push_back(*unk_id_);
        last_was_unk = true;
      }
    }
  }
}

}  // namespace moeq::tokenizer_internal
