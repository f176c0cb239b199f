// safetensors reader (mmap + full header validation) and writers (single file and sharded).
//
// This is the only place that parses the safetensors container. The reader validates every
// header entry before handing out any view, so later code can trust offsets and sizes.
#include "moeq/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "moeq/base/file_util.h"

namespace moeq {
namespace {

std::string Errno() { return std::strerror(errno); }

std::string BaseName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// Reads a non-negative integer from a JSON value; false when it is not one.
bool GetU64(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// a*b with overflow detection.
bool MulOverflow(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// Parses and validates one header entry. `file` and `name` are for messages.
Status ParseEntry(const std::string& file, const std::string& name, const nlohmann::json& e,
                  uint64_t buffer_size, TensorInfo* info, std::pair<uint64_t, uint64_t>* off) {
  auto where = [&](std::string_view field) {
    return file + ": tensor '" + name + "': " + std::string(field);
  };
  if (!e.is_object()) return Status::Corruption(where("header entry is not a JSON object"));
  for (auto it = e.begin(); it != e.end(); ++it) {
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets") {
      return Status::Corruption(where("unexpected field '" + it.key() + "'"));
    }
  }
  auto d = e.find("dtype");
  if (d == e.end() || !d->is_string())
    return Status::Corruption(where("missing or non-string 'dtype'"));
  auto dtype = ParseDType(d->get<std::string>());
  if (!dtype) {
    return Status::Unsupported(where("unsupported dtype '" + d->get<std::string>() + "'"));
  }
  auto s = e.find("shape");
  if (s == e.end() || !s->is_array())
    return Status::Corruption(where("missing or non-array 'shape'"));
  info->name = name;
  info->dtype = *dtype;
  info->shape.clear();
  uint64_t numel = 1;
  for (const auto& dim : *s) {
    uint64_t v;
    if (!GetU64(dim, &v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Status::Corruption(where("'shape' has an entry that is not a non-negative integer"));
    }
    if (MulOverflow(numel, v, &numel))
      return Status::Corruption(where("'shape' overflows 64 bits"));
    info->shape.push_back(static_cast<int64_t>(v));
  }
  auto o = e.find("data_offsets");
  if (o == e.end() || !o->is_array() || o->size() != 2) {
    return Status::Corruption(where("'data_offsets' must be an array [begin, end]"));
  }
  uint64_t b, en;
  if (!GetU64((*o)[0], &b) || !GetU64((*o)[1], &en)) {
    return Status::Corruption(where("'data_offsets' entries must be non-negative integers"));
  }
  if (en < b) {
    return Status::Corruption(where("data_offsets [" + std::to_string(b) + ", " +
                                    std::to_string(en) + ") end before they begin"));
  }
  uint64_t expect;
  if (MulOverflow(numel, DTypeSize(*dtype), &expect)) {
    return Status::Corruption(where("'shape' × dtype size overflows 64 bits"));
  }
  if (en - b != expect) {
    return Status::Corruption(where("dtype " + std::string(DTypeName(*dtype)) + " × shape " +
                                    info->ShapeString() + " is " + std::to_string(expect) +
                                    " bytes but data_offsets span " + std::to_string(en - b)));
  }
  if (en > buffer_size) {
    return Status::Corruption(where("data_offsets [" + std::to_string(b) + ", " +
                                    std::to_string(en) + ") exceed the data buffer of " +
                                    std::to_string(buffer_size) + " bytes (file truncated?)"));
  }
  *off = {b, en};
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::~SafetensorsFile() {
  if (base_) munmap(const_cast<std::byte*>(base_), size_);
  if (fd_ >= 0) close(fd_);
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) try {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const std::string name = BaseName(path);
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::Io(path + ": cannot open: " + Errno());
  }
  struct stat st;
  if (fstat(f->fd_, &st) != 0) return Status::Io(path + ": cannot stat: " + Errno());
  if (!S_ISREG(st.st_mode)) return Status::Corruption(path + ": not a regular file");
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    return Status::Corruption(name + ": file is " + std::to_string(f->size_) +
                              " bytes, too short for the 8-byte header length");
  }
  void* m = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, f->fd_, 0);
  if (m == MAP_FAILED) return Status::Io(path + ": cannot mmap: " + Errno());
  f->base_ = static_cast<const std::byte*>(m);

  uint64_t n;
  std::memcpy(&n, f->base_, 8);  // little-endian host assumed (x86-64, aarch64)
  if (n > kMaxSafetensorsHeaderBytes) {
    return Status::Corruption(name + ": header length " + std::to_string(n) +
                              " exceeds the limit of " +
                              std::to_string(kMaxSafetensorsHeaderBytes));
  }
  if (n > f->size_ - 8) {
    return Status::Corruption(name + ": header length " + std::to_string(n) +
                              " runs past the end of the " + std::to_string(f->size_) +
                              "-byte file");
  }
  f->data_start_ = 8 + n;
  const char* hp = reinterpret_cast<const char*>(f->base_ + 8);
  if (n == 0 || hp[0] != '{') return Status::Corruption(name + ": header does not start with '{'");

  // Parse, rejecting duplicate keys at the top level (nlohmann would keep the last one).
  std::set<std::string> seen;
  std::string duplicate;
  auto parsed = ParseJson(std::string_view(hp, n), name + ": header",
                          [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& value) {
                            if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
                              const auto& k = value.get_ref<const std::string&>();
                              if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
                            }
                            return true;
                          });
  if (!parsed.ok()) return parsed.status();
  nlohmann::json header = std::move(*parsed);
  if (!duplicate.empty())
    return Status::Corruption(name + ": tensor '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) return Status::Corruption(name + ": header is not a JSON object");

  const uint64_t buffer_size = f->size_ - f->data_start_;
  std::vector<std::pair<std::string, const nlohmann::json*>> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return Status::Corruption(name + ": '__metadata__' is not an object");
      for (auto m2 = it->begin(); m2 != it->end(); ++m2) {
        if (!m2->is_string()) {
          return Status::Corruption(name + ": '__metadata__' value for '" + m2.key() +
                                    "' is not a string");
        }
        f->metadata_[m2.key()] = m2->get<std::string>();
      }
      continue;
    }
    entries.emplace_back(it.key(), &*it);
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  f->infos_.resize(entries.size());
  f->offsets_.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    MOEQ_RETURN_IF_ERROR(ParseEntry(name, entries[i].first, *entries[i].second, buffer_size,
                                    &f->infos_[i], &f->offsets_[i]));
  }
  // No two tensors may share bytes (empty tensors occupy none).
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f->offsets_[a] < f->offsets_[b]; });
  size_t prev = SIZE_MAX;
  for (size_t i : order) {
    if (f->offsets_[i].first == f->offsets_[i].second) continue;
    if (prev != SIZE_MAX && f->offsets_[i].first < f->offsets_[prev].second) {
      return Status::Corruption(name + ": tensor '" + f->infos_[i].name + "': data_offsets [" +
                                std::to_string(f->offsets_[i].first) + ", " +
                                std::to_string(f->offsets_[i].second) + ") overlap tensor '" +
                                f->infos_[prev].name + "' [" +
                                std::to_string(f->offsets_[prev].first) + ", " +
                                std::to_string(f->offsets_[prev].second) + ")");
    }
    prev = i;
  }
  madvise(const_cast<std::byte*>(f->base_), f->size_, MADV_SEQUENTIAL);
  return f;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(infos_.begin(), infos_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  if (it == infos_.end() || it->name != name) return nullptr;
  return &*it;
}

std::pair<uint64_t, uint64_t> SafetensorsFile::Offsets(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (!t) return {0, 0};
  return offsets_[static_cast<size_t>(t - infos_.data())];
}

Result<TensorView> SafetensorsFile::View(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (!t) return Status::NotFound(BaseName(path_) + ": no tensor '" + std::string(name) + "'");
  const auto& off = offsets_[static_cast<size_t>(t - infos_.data())];
  TensorView v;
  v.info = t;
  v.data = std::span<const std::byte>(base_ + data_start_ + off.first, off.second - off.first);
  return v;
}

void SafetensorsFile::Prefetch(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (!t || base_ == nullptr) return;
  const auto& off = offsets_[static_cast<size_t>(t - infos_.data())];
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t b = (data_start_ + off.first) / page * page;  // whole pages covering the tensor
  const uint64_t e = data_start_ + off.second;
  if (e > b) madvise(const_cast<std::byte*>(base_) + b, e - b, MADV_WILLNEED);
}

void SafetensorsFile::Release(std::string_view name) const {
  const TensorInfo* t = Find(name);
  if (!t) return;
  const auto& off = offsets_[static_cast<size_t>(t - infos_.data())];
  const uint64_t b = data_start_ + off.first, e = data_start_ + off.second;
  if (e <= b) return;
  auto drop = [this](uint64_t begin, uint64_t end) {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    begin = (begin + page - 1) / page * page;  // only whole pages inside the released range
    end = end / page * page;
    if (end > begin) madvise(const_cast<std::byte*>(base_) + begin, end - begin, MADV_DONTNEED);
  };
  // Tensors are released in the consumer's order, not the file's, so the pending ranges are
  // rarely adjacent: drop their bounding range once they add up to a batch. Pages of tensors
  // inside it that are still in use are simply faulted in again from the page cache
  // (MADV_DONTNEED on a read-only file mapping only unmaps them).
  std::lock_guard<std::mutex> lock(release_mu_);
  if (release_bytes_ == 0) {
    release_begin_ = b;
    release_end_ = e;
  } else {
    release_begin_ = std::min(release_begin_, b);
    release_end_ = std::max(release_end_, e);
  }
  release_bytes_ += e - b;
  if (release_bytes_ >= kReleaseBatchBytes) {
    drop(release_begin_, release_end_);
    release_begin_ = release_end_ = release_bytes_ = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

SafetensorsWriter::~SafetensorsWriter() = default;

Result<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorInfo> tensors,
    std::map<std::string, std::string> metadata, AtomicWriteOptions options) {
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  // Largest element size first, then name: every tensor starts aligned to its element size.
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (DTypeSize(a.dtype) != DTypeSize(b.dtype)) return DTypeSize(a.dtype) > DTypeSize(b.dtype);
    return a.name < b.name;
  });
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    if (t.name.empty() || t.name == "__metadata__") {
      return Status::InvalidArgument(path + ": invalid tensor name '" + t.name + "'");
    }
    if (!w->index_.emplace(t.name, i).second) {
      return Status::InvalidArgument(path + ": tensor '" + t.name + "' declared twice");
    }
    for (int64_t d : t.shape) {
      if (d < 0)
        return Status::InvalidArgument(path + ": tensor '" + t.name + "': negative dimension");
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes()}}};
    w->begin_.push_back(offset);
    offset += t.nbytes();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  w->data_start_ = 8 + text.size();
  w->data_bytes_ = offset;
  w->infos_ = std::move(tensors);
  w->written_.assign(w->infos_.size(), 0);
  for (size_t i = 0; i < w->infos_.size(); ++i) {
    if (w->infos_[i].nbytes() == 0) w->written_[i] = 1;
  }

  MOEQ_ASSIGN_OR_RETURN(w->file_, AtomicFile::Create(path, options));
  std::string head(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(head.data(), &n, 8);
  head += text;
  MOEQ_RETURN_IF_ERROR(w->file_->WriteAt(0, head.data(), head.size()).WithContext("header"));
  return w;
}

Status SafetensorsWriter::Write(std::string_view name, std::span<const std::byte> data) {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return Status::Internal(path_ + ": tensor '" + std::string(name) + "' was not declared");
  }
  const size_t i = it->second;
  if (data.size() != infos_[i].nbytes()) {
    return Status::Internal(path_ + ": tensor '" + std::string(name) + "': got " +
                            std::to_string(data.size()) + " bytes, expected " +
                            std::to_string(infos_[i].nbytes()));
  }
  if (!file_) return Status::Internal(path_ + ": write after Finish()");
  MOEQ_RETURN_IF_ERROR(file_->WriteAt(data_start_ + begin_[i], data.data(), data.size())
                           .WithContext("tensor '" + std::string(name) + "'"));
  std::lock_guard<std::mutex> lock(mu_);
  written_[i] = 1;
  return Status::Ok();
}

Status SafetensorsWriter::Finish() {
  for (size_t i = 0; i < infos_.size(); ++i) {
    if (!written_[i])
      return Status::Internal(path_ + ": tensor '" + infos_[i].name + "' was never written");
  }
  // A file that holds only empty tensors still needs its full length.
  if (!file_) return Status::Internal(path_ + ": Finish() called twice");
  MOEQ_RETURN_IF_ERROR(file_->Truncate(file_size()));
  Status s = file_->Commit();
  file_.reset();
  return s;
}

// ---------------------------------------------------------------------------------------------
// Sharded writer

Result<std::unique_ptr<ShardedSafetensorsWriter>> ShardedSafetensorsWriter::Create(
    const std::string& dir, std::vector<TensorInfo> tensors, ShardingOptions options) {
  std::unique_ptr<ShardedSafetensorsWriter> w(new ShardedSafetensorsWriter());
  w->dir_ = dir;
  w->options_ = std::move(options);
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  std::vector<std::vector<TensorInfo>> groups;
  uint64_t fill = 0;
  for (auto& t : tensors) {
    if (groups.empty() || (fill > 0 && fill + t.nbytes() > w->options_.max_shard_bytes)) {
      groups.emplace_back();
      fill = 0;
    }
    fill += t.nbytes();
    w->total_size_ += t.nbytes();
    groups.back().push_back(std::move(t));
  }
  if (groups.empty()) groups.emplace_back();
  const size_t n = groups.size();
  for (size_t s = 0; s < n; ++s) {
    std::string fname = "model.safetensors";
    if (n > 1) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, n);
      fname = buf;
    }
    for (const auto& t : groups[s]) {
      if (!w->shard_of_.emplace(t.name, s).second) {
        return Status::InvalidArgument(dir + ": tensor '" + t.name + "' declared twice");
      }
    }
    MOEQ_ASSIGN_OR_RETURN(
        auto sw,
        SafetensorsWriter::Create(dir + "/" + fname, std::move(groups[s]), w->options_.metadata));
    w->shards_.push_back(std::move(sw));
    w->shard_names_.push_back(fname);
  }
  return w;
}

Status ShardedSafetensorsWriter::Write(std::string_view name, std::span<const std::byte> data) {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) {
    return Status::Internal(dir_ + ": tensor '" + std::string(name) + "' was not declared");
  }
  return shards_[it->second]->Write(name, data);
}

Status ShardedSafetensorsWriter::Finish() {
  for (auto& s : shards_) MOEQ_RETURN_IF_ERROR(s->Finish());
  if (shards_.size() <= 1) return Status::Ok();
  nlohmann::json index;
  index["metadata"]["total_size"] = total_size_;
  for (const auto& [k, v] : options_.index_metadata) index["metadata"][k] = v;
  index["weight_map"] = nlohmann::json::object();
  for (const auto& [name, s] : shard_of_) index["weight_map"][name] = shard_names_[s];
  return WriteFileAtomic(dir_ + "/model.safetensors.index.json", DumpJson(index));
}

std::vector<std::string> ShardedSafetensorsWriter::shard_files() const { return shard_names_; }

}  // namespace moeq
