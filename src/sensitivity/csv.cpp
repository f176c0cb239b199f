// The CSV companion of sensitivity.jsonl (csv.h).
#include "moeq/sensitivity/csv.h"

#include <string_view>
#include <vector>

#include "moeq/artifacts/sensitivity.h"

namespace moeq::sensitivity {
namespace {

using nlohmann::json;

std::string CsvField(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  if (v.is_array()) {
    std::string s = "\"";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "x" : "") + v[i].dump();
    return s + "\"";
  }
  return v.dump();  // numbers: shortest round-trip representation
}

const std::vector<std::string>& CsvFeatureColumns() { return artifacts::SensitivityFeatureNames(); }

}  // namespace

std::string SensitivityCsvHeader() {
  std::string s =
      "tensor,role,layer,expert,unit,shape,params,dtype,format,encoder,bits,group_size,bytes,nrmse,"
      "sqnr_db";
  for (const auto& c : CsvFeatureColumns()) s += "," + c;
  return s + ",cluster_id,cluster_representative,cluster_size\n";
}

std::string SensitivityCsvRow(const json& r) {
  std::string s;
  for (const char* k : {"tensor", "role", "layer", "expert", "unit", "shape", "params", "dtype",
                        "format", "encoder", "bits", "group_size", "bytes", "nrmse", "sqnr_db"}) {
    if (!s.empty()) s += ',';
    // Rows of a grid without data-aware encoders carry no "encoder": their codes are rtn.
    const std::string_view key(k);
    s += CsvField(key == "encoder" && !r.contains("encoder") ? json("rtn") : r.value(k, json()));
  }
  const json& f = r["features"];
  for (const auto& c : CsvFeatureColumns()) s += "," + CsvField(f.value(c, json()));
  if (r.contains("cluster")) {
    const json& c = r["cluster"];
    s += "," + CsvField(c["id"]) + "," + CsvField(c["representative"]) + "," +
         std::to_string(c["members"].size());
  } else {
    s += ",,,";
  }
  return s + "\n";
}

}  // namespace moeq::sensitivity
