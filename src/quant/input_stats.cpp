// Reading moeq-profile's activation statistics for the encoders (see input_stats.h).
#include "moeq/quant/input_stats.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "moeq/base/file_util.h"
#include "moeq/formats/safetensors.h"

namespace moeq {

InputStatsFile::~InputStatsFile() = default;

Result<std::unique_ptr<InputStatsFile>> InputStatsFile::Open(const std::string& path) {
  std::unique_ptr<InputStatsFile> f(new InputStatsFile());
  f->path_ = path;
  MOEQ_ASSIGN_OR_RETURN(f->file_, SafetensorsFile::Open(path));
  const auto& meta = f->file_->metadata();
  auto it = meta.find("moeq_schema");
  if (it == meta.end() || it->second != "moeq.activation_stats") {
    return Status::InvalidArgument(path +
                                   ": not an activation statistics file (metadata moeq_schema is "
                                   "not 'moeq.activation_stats')");
  }
  if (auto g = meta.find("moeq_gram_of"); g != meta.end()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(g->second);
    } catch (const nlohmann::json::parse_error& e) {
      return Status::Corruption(path + ": metadata moeq_gram_of is not JSON: " + e.what());
    }
    if (!j.is_object())
      return Status::Corruption(path + ": metadata moeq_gram_of is not a JSON object");
    for (auto e = j.begin(); e != j.end(); ++e) {
      if (!e->is_string())
        return Status::Corruption(path + ": metadata moeq_gram_of['" + e.key() +
                                  "'] is not a string");
      f->gram_of_[e.key()] = e->get<std::string>();
    }
    f->has_gram_ = !f->gram_of_.empty();
  }
  MOEQ_ASSIGN_OR_RETURN(f->sha256_, Sha256File(path));
  return f;
}

std::optional<std::vector<float>> InputStatsFile::InSqMean(const std::string& name,
                                                           int64_t cols) const {
  auto v = file_->View(name + ".in_sq_mean");
  if (!v.ok() || v->numel() != cols) return std::nullopt;
  auto f = ToF32(*v);
  if (!f.ok()) return std::nullopt;
  return std::move(*f);
}

Result<std::optional<quant::InputStats>> InputStatsFile::Get(const std::string& name,
                                                             int64_t cols) const {
  auto v = file_->View(name + ".importance");
  if (!v.ok()) v = file_->View(name + ".in_sq_mean");
  if (!v.ok() || v->info->numel() != cols) return std::optional<quant::InputStats>();
  quant::InputStats s;
  MOEQ_ASSIGN_OR_RETURN(std::vector<float> d, ToF32(*v));
  s.diag.assign(d.begin(), d.end());
  if (auto c = file_->View(name + ".count");
      c.ok() && c->info->dtype == DType::kI64 && c->data.size() == 8) {
    std::memcpy(&s.count, c->data.data(), 8);
  }
  if (auto g = gram_of_.find(name); g != gram_of_.end()) {
    auto gv = file_->View(g->second);
    if (!gv.ok())
      return Status::Corruption(path_ + ": tensor '" + g->second +
                                "' named in moeq_gram_of is missing");
    if (gv->info->numel() != cols * cols) {
      return Status::Corruption(path_ + ": tensor '" + g->second + "' has " +
                                std::to_string(gv->info->numel()) + " elements, weight '" + name +
                                "' has " + std::to_string(cols) + " inputs");
    }
    MOEQ_ASSIGN_OR_RETURN(std::vector<float> gm, ToF32(*gv));
    s.gram.assign(gm.begin(), gm.end());
  }
  return std::optional<quant::InputStats>(std::move(s));
}

}  // namespace moeq
