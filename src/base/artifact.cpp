// Artefact headers, output-path checks and byte-size parsing.
#include "moeq/base/artifact.h"

#include <cctype>
#include <cmath>
#include <filesystem>

#include "moeq/base/build_info.h"

namespace moeq {

nlohmann::json MakeArtifactHeader(std::string_view schema, int version, const ArtifactContext& ctx,
                                  nlohmann::json inputs) {
  return {{"schema", schema},
          {"version", version},
          {"producer", {{"tool", ctx.tool}, {"version", kVersion}, {"command", ctx.command_line}}},
          {"inputs", std::move(inputs)},
          {"options", ctx.options}};
}

Status CheckArtifactHeader(const nlohmann::json& header, std::string_view schema, int max_version,
                           std::string_view path) {
  const std::string p(path);
  if (!header.is_object() || !header.contains("schema") || !header["schema"].is_string()) {
    return Status::Corruption(p + ": not a moeq artefact (no 'schema' field)");
  }
  if (header["schema"].get<std::string>() != schema) {
    return Status::InvalidArgument(p + ": schema is '" + header["schema"].get<std::string>() +
                                   "', expected '" + std::string(schema) + "'");
  }
  if (!header.contains("version") || !header["version"].is_number_integer()) {
    return Status::Corruption(p + ": missing integer field 'version'");
  }
  if (header["version"].get<int>() > max_version) {
    return Status::Unsupported(p + ": " + std::string(schema) + " version " +
                               std::to_string(header["version"].get<int>()) +
                               " is newer than this moeq understands (" +
                               std::to_string(max_version) + ")");
  }
  return Status::Ok();
}

Status CheckOutputPath(const std::string& output, const std::vector<std::string>& inputs,
                       bool force) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(fs::absolute(output), ec);
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    const fs::path p = fs::weakly_canonical(fs::absolute(in), ec);
    if (p == out)
      return Status::InvalidArgument(output + ": refusing to overwrite an input of this run");
    // Writing inside an input directory, or an output directory containing an input, is as bad.
    const auto rel_in = p.lexically_relative(out);
    const auto rel_out = out.lexically_relative(p);
    if (fs::is_directory(p, ec) && !rel_out.empty() && *rel_out.begin() != "..") {
      return Status::InvalidArgument(output + ": refusing to write inside input directory " + in);
    }
    if (fs::is_directory(out, ec) && !rel_in.empty() && *rel_in.begin() != "..") {
      return Status::InvalidArgument(output +
                                     ": refusing to replace a directory that contains input " + in);
    }
  }
  if (fs::exists(out, ec) && !force) return Status::AlreadyExists(output + ": already exists");
  return Status::Ok();
}

Result<uint64_t> ParseByteSize(std::string_view text) {
  const std::string s(text);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0)
    return Status::InvalidArgument(
        "size '" + s + "': expected a number with an optional unit (e.g. 21GB, 19.5GiB)");
  double v;
  try {
    v = std::stod(s.substr(0, i));
  } catch (...) {
    return Status::InvalidArgument("size '" + s + "': not a number");
  }
  std::string unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kb")
    mult = 1e3;
  else if (unit == "m" || unit == "mb")
    mult = 1e6;
  else if (unit == "g" || unit == "gb")
    mult = 1e9;
  else if (unit == "t" || unit == "tb")
    mult = 1e12;
  else if (unit == "kib")
    mult = 1024.0;
  else if (unit == "mib")
    mult = 1024.0 * 1024;
  else if (unit == "gib")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "tib")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return Status::InvalidArgument("size '" + s + "': unknown unit '" + unit +
                                   "' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  const double bytes = v * mult;
  if (!std::isfinite(bytes) || bytes > 1.8e19)
    return Status::InvalidArgument("size '" + s + "' is too large");
  return static_cast<uint64_t>(std::llround(bytes));
}

}  // namespace moeq
