// Pre-tokenized id files: JSON, the moeq binary format "MQID", raw .u16/.u32 and .npy
// (normative description: docs/tokens-format.md).
#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>

#include "moeq/base/file_util.h"
#include "moeq/base/json_reader.h"
#include "moeq/tokenizer/tokenizer.h"

namespace moeq {
namespace {

constexpr char kMagic[4] = {'M', 'Q', 'I', 'D'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderBytes = 16;
constexpr char kNpyMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

template <class T>
T LoadLe(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the formats are little-endian, as is every supported host
  return v;
}

/// Reads `count` unsigned or signed little-endian integers of `width` bytes from `p`.
Result<std::vector<int32_t>> DecodeIntegers(const std::string& path, const char* p, size_t count,
                                            size_t width, bool is_signed) {
  std::vector<int32_t> ids(count);
  for (size_t i = 0; i < count; ++i) {
    const char* q = p + i * width;
    int64_t v = 0;
    bool in_range = true;
    switch (width) {
      case 1:
        v = is_signed ? int64_t{LoadLe<int8_t>(q)} : int64_t{LoadLe<uint8_t>(q)};
        break;
      case 2:
        v = is_signed ? int64_t{LoadLe<int16_t>(q)} : int64_t{LoadLe<uint16_t>(q)};
        break;
      case 4:
        v = is_signed ? int64_t{LoadLe<int32_t>(q)} : int64_t{LoadLe<uint32_t>(q)};
        break;
      case 8:
        if (is_signed) {
          v = LoadLe<int64_t>(q);
        } else {
          const uint64_t u = LoadLe<uint64_t>(q);
          in_range = u <= static_cast<uint64_t>(INT32_MAX);
          v = static_cast<int64_t>(u & 0x7FFFFFFF);
        }
        break;
      default:
        return Status::Internal(path + ": unsupported id width " + std::to_string(width));
    }
    if (!in_range || v < 0 || v > INT32_MAX) {
      return Status::Corruption(path + ": id #" + std::to_string(i) + " (byte offset " +
                                std::to_string(static_cast<size_t>(q - p)) + " of the data) is " +
                                (in_range ? std::to_string(v) : "above 2^31-1") +
                                "; ids must be in [0, 2^31-1]");
    }
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

Result<std::vector<int32_t>> ParseJsonIds(const std::string& path, const std::string& text) try {
  MOEQ_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(text, path));
  std::string field;
  const nlohmann::json* list = &j;
  if (j.is_object()) {
    const auto it = j.find("ids");
    if (it == j.end())
      return Status::Corruption(path + ": expected a list of ids or an object with \"ids\"");
    list = &*it;
    field = "ids";
  }
  if (!list->is_array()) {
    return Status::Corruption(path + ": " + (field.empty() ? "top level" : field) +
                              ": expected a list of ids");
  }
  std::vector<int32_t> ids;
  ids.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    const nlohmann::json& v = (*list)[i];
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{INT32_MAX}
                                : (v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX))) {
      return Status::Corruption(path + ": " + field + "[" + std::to_string(i) +
                                "]: expected an integer in [0, 2^31-1], got " + JsonExcerpt(v));
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

Result<std::vector<int32_t>> ParseBinaryIds(const std::string& path, const std::string& data) {
  if (data.size() < kHeaderBytes)
    return Status::Corruption(path + ": shorter than the 16-byte MQID header");
  const auto version = LoadLe<uint16_t>(data.data() + 4);
  const auto width = LoadLe<uint16_t>(data.data() + 6);
  const auto count = LoadLe<uint64_t>(data.data() + 8);
  if (version != kVersion) {
    return Status::Unsupported(path + ": MQID version " + std::to_string(version) +
                               " (expected 1)");
  }
  if (width != 2 && width != 4) {
    return Status::Corruption(path + ": MQID bytes_per_id is " + std::to_string(width) +
                              " (expected 2 or 4)");
  }
  const size_t payload = data.size() - kHeaderBytes;
  if (count > payload / width || count * width != payload) {
    return Status::Corruption(path + ": MQID header says " + std::to_string(count) + " ids of " +
                              std::to_string(width) + " bytes but " + std::to_string(payload) +
                              " data bytes follow");
  }
  return DecodeIntegers(path, data.data() + kHeaderBytes, static_cast<size_t>(count), width, false);
}

Result<std::vector<int32_t>> ParseRawIds(const std::string& path, const std::string& data,
                                         size_t width) {
  if (data.size() % width != 0) {
    return Status::Corruption(path + ": size " + std::to_string(data.size()) +
                              " is not a multiple of " + std::to_string(width) + " bytes");
  }
  return DecodeIntegers(path, data.data(), data.size() / width, width, false);
}

/// The value text of `'key':` in a .npy header dict, up to the next ',' outside parentheses.
std::string NpyField(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return {};
  size_t p = header.find(':', k);
  if (p == std::string::npos) return {};
  ++p;
  int depth = 0;
  size_t e = p;
  for (; e < header.size(); ++e) {
    if (header[e] == '(') ++depth;
    if (header[e] == ')') --depth;
    if ((header[e] == ',' && depth == 0) || header[e] == '}') break;
  }
  std::string v = header.substr(p, e - p);
  const size_t b = v.find_first_not_of(" \t");
  const size_t z = v.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : v.substr(b, z - b + 1);
}

Result<std::vector<int32_t>> ParseNpyIds(const std::string& path, const std::string& data) {
  if (data.size() < 10 || std::memcmp(data.data(), kNpyMagic, 6) != 0) {
    return Status::Corruption(path + ": not a .npy file (bad magic)");
  }
  const auto major = static_cast<unsigned char>(data[6]);
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = LoadLe<uint16_t>(data.data() + 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) return Status::Corruption(path + ": truncated .npy header");
    header_len = LoadLe<uint32_t>(data.data() + 8);
    header_start = 12;
  } else {
    return Status::Unsupported(path + ": .npy format version " + std::to_string(major));
  }
  if (data.size() - header_start < header_len)
    return Status::Corruption(path + ": truncated .npy header");
  const std::string header = data.substr(header_start, header_len);
  const std::string descr = NpyField(header, "descr");
  const std::string fortran = NpyField(header, "fortran_order");
  const std::string shape = NpyField(header, "shape");
  // descr is a quoted type string such as '<u2': byte order, kind, width in bytes.
  const bool quoted =
      descr.size() == 5 && (descr[0] == '\'' || descr[0] == '"') && descr[4] == descr[0];
  const char order = quoted ? descr[1] : '?';
  const char kind = quoted ? descr[2] : '?';
  const int width_digit = quoted ? descr[3] - '0' : 0;
  if ((order != '<' && order != '|') || (kind != 'u' && kind != 'i') ||
      (width_digit != 1 && width_digit != 2 && width_digit != 4 && width_digit != 8)) {
    return Status::Unsupported(
        path + ": .npy descr " + descr +
        " (expected a little-endian integer type such as '<u2', '<i4', '<i8')");
  }
  // A 1-D array has the same layout in C and Fortran order.
  if (fortran != "False" && fortran != "True")
    return Status::Corruption(path + ": .npy fortran_order missing");
  if (shape.size() < 3 || shape.front() != '(' || shape.back() != ')' ||
      shape.find(',') != shape.rfind(',') || shape[shape.size() - 2] != ',') {
    return Status::Unsupported(path + ": .npy shape " + shape +
                               " (expected a 1-D array such as (1234,))");
  }
  uint64_t count = 0;
  for (char c : shape.substr(1, shape.size() - 3)) {
    if (c == ' ') continue;
    if (c < '0' || c > '9' || count > (uint64_t{1} << 40)) {
      return Status::Corruption(path + ": .npy shape " + shape + " is not a length");
    }
    count = count * 10 + static_cast<uint64_t>(c - '0');
  }
  const auto width = static_cast<size_t>(width_digit);
  const size_t payload = data.size() - header_start - header_len;
  if (count * width != payload) {
    return Status::Corruption(path + ": .npy shape says " + std::to_string(count) +
                              " elements of " + std::to_string(width) + " bytes but " +
                              std::to_string(payload) + " data bytes follow");
  }
  return DecodeIntegers(path, data.data() + header_start + header_len, static_cast<size_t>(count),
                        width, kind == 'i');
}

}  // namespace

Result<std::vector<int32_t>> LoadTokenIds(const std::string& path) {
  MOEQ_ASSIGN_OR_RETURN(const std::string data, ReadFile(path));
  if (EndsWith(path, ".json")) return ParseJsonIds(path, data);
  if (EndsWith(path, ".npy")) return ParseNpyIds(path, data);
  if (EndsWith(path, ".u16")) return ParseRawIds(path, data, 2);
  if (EndsWith(path, ".u32")) return ParseRawIds(path, data, 4);
  if (data.size() >= 4 && std::memcmp(data.data(), kMagic, 4) == 0)
    return ParseBinaryIds(path, data);
  if (data.size() >= 6 && std::memcmp(data.data(), kNpyMagic, 6) == 0)
    return ParseNpyIds(path, data);
  const size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (data[first] == '[' || data[first] == '{'))
    return ParseJsonIds(path, data);
  return Status::Unsupported(path +
                             ": unknown token-id format (expected .json, .npy, .u16, .u32 or an "
                             "MQID file; see docs/tokens-format.md)");
}

Status WriteTokenIds(const std::string& path, std::span<const int32_t> ids) {
  int32_t max_id = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0) {
      return Status::InvalidArgument(path + ": ids[" + std::to_string(i) +
                                     "] = " + std::to_string(ids[i]) + " is negative");
    }
    max_id = std::max(max_id, ids[i]);
  }
  const uint16_t width = max_id <= 0xFFFF ? 2 : 4;
  std::string out(kHeaderBytes + ids.size() * width, '\0');
  std::memcpy(out.data(), kMagic, 4);
  std::memcpy(out.data() + 4, &kVersion, 2);
  std::memcpy(out.data() + 6, &width, 2);
  const uint64_t count = ids.size();
  std::memcpy(out.data() + 8, &count, 8);
  char* p = out.data() + kHeaderBytes;
  for (const int32_t id : ids) {
    if (width == 2) {
      const auto v = static_cast<uint16_t>(id);
      std::memcpy(p, &v, 2);
    } else {
      const auto v = static_cast<uint32_t>(id);
      std::memcpy(p, &v, 4);
    }
    p += width;
  }
  return WriteFileAtomic(path, out);
}

}  // namespace moeq
