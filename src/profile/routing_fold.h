// Internal: folding per-token routing into a RoutingProfile (shared by the engine path and the
// routing-trace path so both compute exactly the same statistics).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "moeq/base/atomic_file.h"
#include "moeq/model/model_config.h"
#include "moeq/profile/routing_profile.h"

namespace moeq::internal {

/// A profile with zeroed accumulators for `config`'s layers and the given domains.
RoutingProfile MakeBlankProfile(const ModelConfig& config, const std::vector<std::string>& domains,
                                bool activations, const ProfileOptions& options);

/// Index of `name` in `domains`, appended when new.
int DomainIndex(std::vector<std::string>* domains, const std::string& name);

/// Folds routing token by token. Feed each layer's tokens in text order.
class RoutingFolder {
 public:
  explicit RoutingFolder(RoutingProfile* profile);
  /// `experts` and `weights` are [tokens, top_k] row-major for MoE layer `layer`, best first.
  /// Ids must be valid and distinct within a token (callers check).
  void Add(int layer, int domain, int64_t tokens, const int32_t* experts, const float* weights);
  /// Hotness results, top pairs and tiers.
  void Finish();

 private:
  RoutingProfile* p_;
  std::vector<HotnessTracker> hot_;
};

/// Streams a routing trace (JSONL) through an AtomicFile, renamed into place on Finish().
class TraceWriter {
 public:
  /// Opens the temporary file and writes `header` as the first line.
  Status Open(const std::string& path, const nlohmann::json& header,
              AtomicWriteOptions options = {});
  /// One line: token `token` at MoE layer `layer` chose `experts` (best first) with `weights`.
  void WriteLine(int layer, int64_t token, int64_t top_k, const int32_t* experts,
                 const float* weights, const std::string& domain);
  Status Finish();

 private:
  std::unique_ptr<AtomicFile> file_;
  std::FILE* f_ = nullptr;
};

}  // namespace moeq::internal
