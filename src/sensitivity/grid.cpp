// The rate-distortion grid (grid.h).
#include "moeq/sensitivity/grid.h"

#include <algorithm>
#include <filesystem>

#include "moeq/base/artifact.h"
#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/quant/quant_format.h"
#include "moeq/sensitivity/default_grid.h"

namespace moeq::sensitivity {

using nlohmann::json;

Result<std::vector<GridConfig>> LoadGrid(const std::string& path, std::string* label,
                                         std::string* sha256) {
  if (path.empty()) {
    *label = kDefaultMintGridLabel;
    *sha256 = Sha256Hex(std::string_view(kDefaultMintGridJson));
    json j;
    try {
      j = json::parse(kDefaultMintGridJson);
    } catch (const json::exception& e) {
      return Status::Internal(std::string("built-in grid: ") + e.what());
    }
    return GridFromJson(j, *label);
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Status::InvalidArgument("--grid " + path + ": no such file");
  *label = path;
  MOEQ_ASSIGN_OR_RETURN(*sha256, Sha256File(path));
  MOEQ_ASSIGN_OR_RETURN(json j, ReadJsonFile(path));
  return GridFromJson(j, path);
}

Result<std::vector<GridConfig>> GridFromJson(const json& j, const std::string& path) try {
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(j, "moeq.mint_grid", 1, path));
  if (!j.contains("configs") || !j["configs"].is_array() || j["configs"].empty()) {
    return Status::InvalidArgument(path + ": 'configs' must be a non-empty array");
  }
  std::vector<GridConfig> grid;
  for (size_t i = 0; i < j["configs"].size(); ++i) {
    const json& c = j["configs"][i];
    const std::string where = path + ": configs[" + std::to_string(i) + "]";
    if (!c.is_object() || !c.contains("format") || !c["format"].is_string()) {
      return Status::InvalidArgument(where + ": missing string field 'format'");
    }
    GridConfig g;
    g.spec = c["format"].get<std::string>();
    auto f = quant::ParseFormatSpec(g.spec);
    if (!f.ok()) return Status::InvalidArgument(where + ": " + f.status().message());
    g.bits = (*f)->is_affine() ? (*f)->bits : ((*f)->bits == 32 ? 32 : 16);
    g.affine = (*f)->is_affine();
    g.group_size = (*f)->group_size;
    if (c.contains("bits") && (!c["bits"].is_number_integer() || c["bits"].get<int>() != g.bits)) {
      return Status::InvalidArgument(where + ": field 'bits' does not match format '" + g.spec +
                                     "'");
    }
    if (c.contains("group_size") &&
        (!c["group_size"].is_number_integer() || c["group_size"].get<int>() != g.group_size)) {
      return Status::InvalidArgument(where + ": field 'group_size' does not match format '" +
                                     g.spec + "'");
    }
    grid.push_back(g);
  }
  return grid;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

std::vector<GridConfig> ExpandGridByEncoders(const std::vector<GridConfig>& grid,
                                             const std::vector<quant::EncoderKind>& encoders) {
  std::vector<GridConfig> expanded;
  for (const GridConfig& g : grid) {
    for (quant::EncoderKind e : encoders) {
      if (!g.affine && e != quant::EncoderKind::kRtn) continue;
      GridConfig x = g;
      x.encoder = e;
      expanded.push_back(x);
    }
    if (!g.affine &&
        std::find(encoders.begin(), encoders.end(), quant::EncoderKind::kRtn) == encoders.end()) {
      expanded.push_back(g);
    }
  }
  return expanded;
}

}  // namespace moeq::sensitivity
