// GgufFile: a validating, memory-mapped GGUF v3 reader (docs/formats.md §3.1).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "moeq/base/checked_math.h"
#include "moeq/formats/gguf.h"

namespace moeq {
namespace {

/// Bounds-checked little-endian cursor over the mapped file.
class Cursor {
 public:
  Cursor(const std::byte* data, uint64_t size, const std::string& path)
      : p_(data), size_(size), path_(path) {}

  template <class T>
  Result<T> Get(const std::string& what) {
    if (size_ - pos_ < sizeof(T)) return Truncated(what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  Result<std::string> String(const std::string& what) {
    MOEQ_ASSIGN_OR_RETURN(const uint64_t n, Get<uint64_t>(what));
    if (size_ - pos_ < n) return Truncated(what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  Status Truncated(const std::string& what) const {
    return Status::Corruption(path_ + ": truncated at byte " + std::to_string(pos_) + " reading " +
                              what);
  }

 private:
  const std::byte* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

size_t ScalarBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64:
      return 8;
    default:
      return 0;
  }
}

Result<nlohmann::json> ReadScalar(Cursor& c, GgufValueType t, const std::string& what) {
  switch (t) {
    case GgufValueType::kU8: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<uint8_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kI8: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<int8_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kU16: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<uint16_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kI16: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<int16_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kU32: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<uint32_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kI32: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<int32_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kF32: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<float>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kU64: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<uint64_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kI64: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<int64_t>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kF64: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<double>(what));
      return nlohmann::json(v);
    }
    case GgufValueType::kBool: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.Get<uint8_t>(what));
      if (v > 1) return Status::Corruption(what + ": bool value " + std::to_string(v));
      return nlohmann::json(v != 0);
    }
    case GgufValueType::kString: {
      MOEQ_ASSIGN_OR_RETURN(auto v, c.String(what));
      return nlohmann::json(std::move(v));
    }
    default:
      return Status::Corruption(what + ": unknown value type " +
                                std::to_string(static_cast<int32_t>(t)));
  }
}

std::string ShapeText(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

}  // namespace

int64_t GgufTensorInfo::numel() const {
  // The reader rejects dimensions whose product overflows; -1 for an info built elsewhere.
  return CheckedProduct(ne).value_or(-1);
}

GgufFile::~GgufFile() {
  if (base_ && size_ > 0) ::munmap(const_cast<std::byte*>(base_), static_cast<size_t>(size_));
}

Result<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path,
                                                 const GgufOpenOptions& options) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + ": no such file")
                           : Status::Io(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Status::Io(path + ": cannot stat: " + std::strerror(errno));
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 24) {
    ::close(fd);
    return Status::Corruption(path + ": " + std::to_string(f->size_) +
                              " bytes is too small for a GGUF header");
  }
  void* m = ::mmap(nullptr, static_cast<size_t>(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return Status::Io(path + ": mmap failed: " + std::strerror(errno));
  f->base_ = static_cast<const std::byte*>(m);

  Cursor c(f->base_, f->size_, f->path_);
  MOEQ_ASSIGN_OR_RETURN(const uint32_t magic, c.Get<uint32_t>("magic"));
  if (magic != kGgufMagic) return Status::Corruption(path + ": not a GGUF file (bad magic)");
  MOEQ_ASSIGN_OR_RETURN(f->version_, c.Get<uint32_t>("version"));
  if (f->version_ > 3 || f->version_ < std::min<uint32_t>(options.min_version, 3)) {
    return Status::Unsupported(
        path + ": GGUF version " + std::to_string(f->version_) +
        (options.min_version < 3 ? " (2 or 3 expected)" : " (only version 3 is read)"));
  }
  MOEQ_ASSIGN_OR_RETURN(const uint64_t n_tensors, c.Get<uint64_t>("n_tensors"));
  MOEQ_ASSIGN_OR_RETURN(const uint64_t n_kv, c.Get<uint64_t>("n_kv"));
  // Every KV takes at least 12 bytes, every tensor info at least 24.
  if (n_kv > c.remaining() / 12 || n_tensors > c.remaining() / 24) {
    return Status::Corruption(path + ": header counts (" + std::to_string(n_kv) + " KV, " +
                              std::to_string(n_tensors) + " tensors) exceed the file size");
  }
  std::map<std::string, size_t, std::less<>> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string what = "metadata entry " + std::to_string(i);
    MOEQ_ASSIGN_OR_RETURN(std::string key, c.String(what + " key"));
    const std::string kwhat = path + ": metadata '" + key + "'";
    if (keys.count(key)) return Status::Corruption(kwhat + ": duplicate key");
    MOEQ_ASSIGN_OR_RETURN(const int32_t type, c.Get<int32_t>(kwhat + " type"));
    GgufValue v;
    v.type = static_cast<GgufValueType>(type);
    if (v.type == GgufValueType::kArray) {
      MOEQ_ASSIGN_OR_RETURN(const int32_t et, c.Get<int32_t>(kwhat + " array type"));
      v.elem_type = static_cast<GgufValueType>(et);
      MOEQ_ASSIGN_OR_RETURN(const uint64_t n, c.Get<uint64_t>(kwhat + " array length"));
      const size_t min_elem = v.elem_type == GgufValueType::kString ? 8 : ScalarBytes(v.elem_type);
      if (min_elem == 0)
        return Status::Corruption(kwhat + ": unsupported array element type " + std::to_string(et));
      if (n > c.remaining() / min_elem)
        return Status::Corruption(kwhat + ": array length " + std::to_string(n) +
                                  " exceeds the file");
      v.value = nlohmann::json::array();
      for (uint64_t k = 0; k < n; ++k) {
        MOEQ_ASSIGN_OR_RETURN(nlohmann::json e, ReadScalar(c, v.elem_type, kwhat));
        v.value.push_back(std::move(e));
      }
    } else {
      MOEQ_ASSIGN_OR_RETURN(v.value, ReadScalar(c, v.type, kwhat));
    }
    keys[key] = f->kv_.size();
    f->kv_.emplace_back(std::move(key), std::move(v));
  }
  if (options.metadata_only) return f;
  if (const GgufValue* a = f->Find("general.alignment")) {
    if (a->type != GgufValueType::kU32)
      return Status::Corruption(path + ": metadata 'general.alignment' is not u32");
    const uint32_t al = a->value.get<uint32_t>();
    if (al == 0 || (al & (al - 1)) != 0) {
      return Status::Corruption(path + ": metadata 'general.alignment' = " + std::to_string(al) +
                                " is not a power of 2");
    }
    f->alignment_ = al;
  }
  uint64_t expected_offset = 0;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    MOEQ_ASSIGN_OR_RETURN(t.name, c.String("tensor info " + std::to_string(i) + " name"));
    const std::string twhat = path + ": tensor '" + t.name + "'";
    if (t.name.size() >= 64) return Status::Corruption(twhat + ": name is 64 bytes or longer");
    if (f->by_name_.count(t.name)) return Status::Corruption(twhat + ": duplicate tensor name");
    MOEQ_ASSIGN_OR_RETURN(const uint32_t n_dims, c.Get<uint32_t>(twhat + " n_dims"));
    if (n_dims == 0 || n_dims > 4)
      return Status::Corruption(twhat + ": n_dims " + std::to_string(n_dims) + " not in 1..4");
    for (uint32_t d = 0; d < n_dims; ++d) {
      MOEQ_ASSIGN_OR_RETURN(const int64_t ne, c.Get<int64_t>(twhat + " ne"));
      if (ne < 0 || ne > (int64_t{1} << 40))
        return Status::Corruption(twhat + ": ne[" + std::to_string(d) +
                                  "] = " + std::to_string(ne));
      t.ne.push_back(ne);
    }
    MOEQ_ASSIGN_OR_RETURN(const int32_t type, c.Get<int32_t>(twhat + " type"));
    const GgmlTypeTraits* tt = FindGgmlTypeById(type);
    if (!tt)
      return Status::Unsupported(twhat + ": ggml type " + std::to_string(type) +
                                 " is not supported by moeq");
    t.type = tt->type;
    MOEQ_ASSIGN_OR_RETURN(t.offset, c.Get<uint64_t>(twhat + " offset"));
    auto row = GgmlRowBytes(t.type, t.ne[0]);
    if (!row.ok()) return Status::Corruption(twhat + ": " + row.status().message());
    // All size arithmetic checked: dimensions up to 2^40 each overflow int64 when multiplied.
    const std::optional<int64_t> numel = CheckedProduct(t.ne);
    if (!numel)
      return Status::Corruption(twhat + ": element count " + ShapeText(t.ne) +
                                " overflows 64 bits");
    const uint64_t rows = t.ne[0] == 0 ? 0 : static_cast<uint64_t>(*numel / t.ne[0]);
    const std::optional<uint64_t> nbytes = CheckedMul<uint64_t>(*row, rows);
    if (!nbytes || *nbytes > f->size_) {
      return Status::Corruption(twhat + ": " + ShapeText(t.ne) + " of " + GgmlTypeName(t.type) +
                                " needs more bytes than the " + std::to_string(f->size_) +
                                "-byte file holds");
    }
    t.nbytes = *nbytes;
    if (t.offset != expected_offset) {
      return Status::Corruption(twhat + ": offset " + std::to_string(t.offset) + ", expected " +
                                std::to_string(expected_offset) +
                                " (tensors must follow each other, aligned to " +
                                std::to_string(f->alignment_) + ")");
    }
    // nbytes <= file size < 2^63, so rounding up cannot overflow; the running offset can.
    const std::optional<uint64_t> next = CheckedAdd<uint64_t>(
        expected_offset, (t.nbytes + f->alignment_ - 1) / f->alignment_ * f->alignment_);
    if (!next || *next > f->size_)
      return Status::Corruption(twhat + ": data runs past the end of the file");
    expected_offset = *next;
    f->by_name_[t.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }
  f->data_offset_ = (c.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  for (const auto& t : f->tensors_) {
    const std::optional<uint64_t> start = CheckedAdd<uint64_t>(f->data_offset_, t.offset);
    const std::optional<uint64_t> end =
        start ? CheckedAdd<uint64_t>(*start, t.nbytes) : std::nullopt;
    if (!end || *end > f->size_) {
      return Status::Corruption(path + ": tensor '" + t.name + "': data ends at byte " +
                                std::to_string(f->data_offset_ + t.offset + t.nbytes) +
                                ", past the end of the file (" + std::to_string(f->size_) +
                                " bytes)");
    }
  }
  return f;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& [k, v] : kv_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Result<std::span<const std::byte>> GgufFile::TensorData(std::string_view name) const {
  const GgufTensorInfo* t = FindTensor(name);
  if (!t) return Status::NotFound(path_ + ": no tensor '" + std::string(name) + "'");
  return std::span<const std::byte>(base_ + data_offset_ + t->offset,
                                    static_cast<size_t>(t->nbytes));
}

Result<std::vector<float>> GgufFile::DequantizeTensor(std::string_view name) const {
  MOEQ_ASSIGN_OR_RETURN(const auto data, TensorData(name));
  const GgufTensorInfo* t = FindTensor(name);
  std::vector<float> out(static_cast<size_t>(t->numel()));
  if (out.empty()) return out;
  const int64_t rows = t->numel() / t->ne[0];
  const uint64_t row_bytes = t->nbytes / static_cast<uint64_t>(rows);
  for (int64_t r = 0; r < rows; ++r) {
    Status s = DequantizeGgmlRow(t->type, data.data() + static_cast<uint64_t>(r) * row_bytes,
                                 t->ne[0], out.data() + r * t->ne[0]);
    if (!s.ok()) return s.WithContext(path_ + ": tensor '" + t->name + "'");
  }
  return out;
}

}  // namespace moeq
