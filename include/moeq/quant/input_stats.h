// Input statistics of linear layers for the data-aware encoders and the activation-weighted
// error: reads moeq-profile's activation statistics file (docs/artifacts.md "Activation
// statistics"): per weight "<W>.importance" (shrunk mean x², falling back to "<W>.in_sq_mean"
// for files written before it existed), "<W>.count", and with --gram the Gram matrix of the
// weight's input through the metadata map "moeq_gram_of".
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/quant/encoders.h"

namespace moeq {

class SafetensorsFile;

class InputStatsFile {
 public:
  ~InputStatsFile();
  /// Opens and checks the schema (metadata moeq_schema = moeq.activation_stats).
  static Result<std::unique_ptr<InputStatsFile>> Open(const std::string& path);

  /// Statistics of the input of weight `weight_name` (a per-expert name for expert weights)
  /// with `cols` input features: diag always, gram when the file has one for it. nullopt when
  /// the file has nothing for this weight or the width differs (e.g. o_proj, lm_head: moeq-profile
  /// does not observe their inputs).
  Result<std::optional<quant::InputStats>> Get(const std::string& weight_name, int64_t cols) const;

  /// The unshrunk mean x² ("<W>.in_sq_mean", F32 [cols]) of the input of weight
  /// `weight_name`; nullopt when the file has none for it or the width differs.
  std::optional<std::vector<float>> InSqMean(const std::string& weight_name, int64_t cols) const;

  bool has_gram() const { return has_gram_; }
  const std::string& path() const { return path_; }
  const std::string& sha256() const { return sha256_; }

 private:
  InputStatsFile() = default;
  std::string path_, sha256_;
  std::unique_ptr<SafetensorsFile> file_;
  bool has_gram_ = false;
  std::map<std::string, std::string> gram_of_;
};

}  // namespace moeq
