// safetensors reading (mmap, fully validated header, zero-copy views) and writing
// (deterministic layout, atomic rename, optional sharding with model.safetensors.index.json).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moeq/base/atomic_file.h"
#include "moeq/base/status.h"
#include "moeq/base/tensor.h"

namespace moeq {

/// Largest accepted JSON header, as in the reference implementation.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

/// A read-only, memory-mapped safetensors file. Open() validates the whole header before any
/// tensor is touched: header length cap, JSON syntax, dtype names, shape × dtype size equal to
/// the byte span, offsets inside the file and no overlaps. Tensor bytes are not read until used.
class SafetensorsFile {
 public:
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// Opens and validates `path`. Errors name the file and the offending tensor and field.
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  /// Byte offset of the data buffer (8 + header length).
  uint64_t data_start() const { return data_start_; }

  /// Tensors sorted by name.
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  /// The tensor called `name`, or nullptr.
  const TensorInfo* Find(std::string_view name) const;
  /// Zero-copy view of a tensor's bytes; NotFound names the file and tensor.
  Result<TensorView> View(std::string_view name) const;
  /// [begin, end) of a tensor relative to the data buffer.
  std::pair<uint64_t, uint64_t> Offsets(std::string_view name) const;

  /// The "__metadata__" string map (empty if absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// Tells the kernel that the tensor will not be needed soon (releases page cache pressure).
  /// Small tensors are batched: the pages are dropped once the released tensors add up to
  /// kReleaseBatchBytes (one madvise per batch instead of one TLB flush per tensor), so at
  /// most that much released data stays mapped.
  void Release(std::string_view name) const;
  /// Starts reading a tensor's pages into the page cache in the background (MADV_WILLNEED), so a
  /// consumer that will read it next does not wait for the disk page by page.
  void Prefetch(std::string_view name) const;
  static constexpr uint64_t kReleaseBatchBytes = uint64_t{8} << 20;

 private:
  SafetensorsFile() = default;
  std::string path_;
  int fd_ = -1;
  const std::byte* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> infos_;
  std::vector<std::pair<uint64_t, uint64_t>> offsets_;  // parallel to infos_
  std::map<std::string, std::string> metadata_;
  // Released tensors not yet handed to madvise: their bounding range and total bytes.
  mutable std::mutex release_mu_;
  mutable uint64_t release_begin_ = 0, release_end_ = 0, release_bytes_ = 0;
};

/// Writes one safetensors file. All tensors are declared up front so the header (and every
/// tensor's offset) is known before any data is written; tensor data can then be written in
/// any order, from any thread. The layout is deterministic: tensors sorted by descending
/// element size, then name (so each starts aligned to its element size), header padded with
/// spaces to a multiple of 8. Data goes to an AtomicFile (moeq/atomic_file.h) renamed to `path` by
/// Finish().
class SafetensorsWriter {
 public:
  ~SafetensorsWriter();  ///< removes the temporary file if Finish() was not reached
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  static Result<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorInfo> tensors,
      std::map<std::string, std::string> metadata = {{"format", "pt"}},
      AtomicWriteOptions options = {.overwrite = true});

  /// Writes the whole data of tensor `name`; `data.size()` must equal its nbytes(). Thread-safe.
  Status Write(std::string_view name, std::span<const std::byte> data);
  /// Checks that every tensor was written, flushes, and renames the file into place.
  Status Finish();

  /// Total file size the header implies.
  uint64_t file_size() const { return data_start_ + data_bytes_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
  uint64_t data_start_ = 0, data_bytes_ = 0;
  std::map<std::string, size_t, std::less<>> index_;
  std::vector<TensorInfo> infos_;
  std::vector<uint64_t> begin_;
  std::vector<char> written_;
  std::mutex mu_;
};

/// Options for a sharded checkpoint.
struct ShardingOptions {
  /// Largest data bytes per shard; a tensor larger than this gets its own shard. Default: 5 GB.
  uint64_t max_shard_bytes = 5'000'000'000ULL;
  /// Metadata written into every shard.
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  /// Extra keys for the index's "metadata" object besides "total_size" (e.g. total_parameters).
  std::map<std::string, uint64_t> index_metadata;
};

/// Writes a model's tensors into `dir`: a single "model.safetensors" when they fit in one shard,
/// else "model-0000i-of-0000N.safetensors" files plus "model.safetensors.index.json". Tensors
/// are assigned to shards greedily in name order. `dir` must exist.
class ShardedSafetensorsWriter {
 public:
  static Result<std::unique_ptr<ShardedSafetensorsWriter>> Create(const std::string& dir,
                                                                  std::vector<TensorInfo> tensors,
                                                                  ShardingOptions options = {});
  /// Thread-safe, any order.
  Status Write(std::string_view name, std::span<const std::byte> data);
  /// Finishes every shard and writes the index (when sharded).
  Status Finish();
  /// File names (relative to dir) in shard order.
  std::vector<std::string> shard_files() const;

 private:
  ShardedSafetensorsWriter() = default;
  std::string dir_;
  ShardingOptions options_;
  std::vector<std::unique_ptr<SafetensorsWriter>> shards_;
  std::vector<std::string> shard_names_;
  std::map<std::string, size_t, std::less<>> shard_of_;
  uint64_t total_size_ = 0;
};

}  // namespace moeq
