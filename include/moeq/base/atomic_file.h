// AtomicFile and AtomicDir: the one way moeq writes an output (docs/reliability.md).
//
// An output is first written under a unique temporary name in the destination's own directory,
//   ".<name>.moeq-tmp-<pid>-<random hex>"
// created with O_CREAT|O_EXCL|O_NOFOLLOW (a directory with mkdir, which never follows a link),
// so a planted symlink or an existing file at that name is never opened, let alone truncated.
// Commit() flushes the data (fsync), renames the temporary into place and fsyncs the directory.
// Without `overwrite` the destination is checked again at rename time (renameat2 with
// RENAME_NOREPLACE): an output that appeared meanwhile is never replaced. Until Commit() the
// destination is untouched; an object destroyed without Commit() removes its temporary.
//
// Concurrent writers of one output each write their own temporary, so every result is complete
// and the last rename wins. Temporaries left by moeq processes that died (kill -9, power loss)
// are recognised by their name and pid and removed by the next writer of the same directory.
#pragma once

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "moeq/base/status.h"

namespace moeq {

struct AtomicWriteOptions {
  /// Replace an existing destination (the tools' --force). Without it, a destination that
  /// exists at Commit() time is an AlreadyExists error and the new result is discarded.
  bool overwrite = false;
};

/// The marker in every temporary name moeq creates.
inline constexpr std::string_view kTempMarker = ".moeq-tmp-";

/// The temporary name for `path` ("<dir>/.<base>.moeq-tmp-<pid>-<hex>"), without creating it.
std::string TempNameFor(const std::string& path);

/// Removes moeq temporaries (files and directories) in `dir` whose creating process is no
/// longer alive; returns how many were removed. Entries of live processes are left alone.
int RemoveStaleTemporaries(const std::string& dir);

/// A regular file written under a temporary name and renamed into place by Commit().
class AtomicFile {
 public:
  /// Creates the temporary for `path` (after removing stale temporaries in its directory).
  static Result<std::unique_ptr<AtomicFile>> Create(const std::string& path,
                                                    AtomicWriteOptions options = {});
  ~AtomicFile();  ///< removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends bytes (through the stream when one was opened).
  Status Write(std::string_view data);
  Status Write(const void* data, size_t n) {
    return Write(std::string_view(static_cast<const char*>(data), n));
  }
  /// Writes at an absolute offset (not mixed with Stream()). Thread-safe.
  Status WriteAt(uint64_t offset, const void* data, size_t n);
  /// Sets the file size.
  Status Truncate(uint64_t size);
  /// A buffered stdio stream on the file, owned by this object (for fprintf-style writers).
  /// Errors on it are detected by Commit().
  std::FILE* Stream();
  /// Flushes, fsyncs, renames into place and fsyncs the directory. Error texts include strerror.
  Status Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }
  int fd() const { return fd_; }

 private:
  AtomicFile() = default;
  std::string path_, tmp_;
  int fd_ = -1;
  std::FILE* stream_ = nullptr;
  bool overwrite_ = false;
  bool committed_ = false;
};

/// A directory built under a temporary name and renamed into place by Commit(). With
/// `overwrite`, an existing destination is swapped out atomically (RENAME_EXCHANGE) and then
/// removed, so readers see either the old or the new tree, never a mix.
class AtomicDir {
 public:
  static Result<std::unique_ptr<AtomicDir>> Create(const std::string& path,
                                                   AtomicWriteOptions options = {});
  ~AtomicDir();  ///< removes the temporary tree unless committed
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  /// Where to write the contents.
  const std::string& temp_path() const { return tmp_; }
  const std::string& path() const { return path_; }
  /// fsyncs the tree's directories, renames into place and fsyncs the parent directory.
  Status Commit();

 private:
  AtomicDir() = default;
  std::string path_, tmp_;
  bool overwrite_ = false;
  bool committed_ = false;
};

/// Writes `contents` to `path` through an AtomicFile.
Status WriteFileAtomic(const std::string& path, std::string_view contents,
                       AtomicWriteOptions options);

}  // namespace moeq
