// AtomicFile / AtomicDir: unique O_EXCL|O_NOFOLLOW temporaries, fsync, rename with a re-check of
// the destination, and removal of the temporaries of dead moeq processes (docs/reliability.md).
#include "moeq/base/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

namespace moeq {
namespace {

namespace fs = std::filesystem;

std::string ErrnoText(int e) { return std::strerror(e); }

/// "a/b/" -> "a/b": the name of a directory given with a trailing slash.
std::string StripSlashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string ParentDir(const std::string& path) {
  const fs::path parent = fs::path(StripSlashes(path)).parent_path();
  return parent.empty() ? "." : parent.string();
}

/// Whether process `pid` exists (EPERM: it exists but is not ours).
bool ProcessAlive(long pid) {
  if (pid <= 0) return true;  // unparsable: treat as alive, never remove
  if (pid == static_cast<long>(::getpid())) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

/// Digits at `s[pos..]` up to '-', or -1.
long ParsePid(std::string_view s, size_t pos) {
  long pid = 0;
  size_t i = pos;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    pid = pid * 10 + (s[i] - '0');
    if (pid > (1L << 31)) return -1;
  }
  if (i == pos || i >= s.size() || s[i] != '-') return -1;
  return pid;
}

/// The pid in a moeq temporary's name, or -1 when `name` is not one. Recognised:
///   ".<base>.moeq-tmp-<pid>-<hex>"                (AtomicFile / AtomicDir)
///   ".<base>.tmp-<pid>-<8 hex>", ".<base>.old-<pid>-<8 hex>"  (directories of moeq <= 0.1)
long TempOwnerPid(std::string_view name, bool is_dir) {
  if (name.size() < 3 || name[0] != '.') return -1;
  const size_t m = name.rfind(kTempMarker);
  if (m != std::string_view::npos && m > 0) return ParsePid(name, m + kTempMarker.size());
  if (!is_dir) return -1;
  for (std::string_view tag : {std::string_view(".tmp-"), std::string_view(".old-")}) {
    const size_t t = name.rfind(tag);
    if (t == std::string_view::npos || t == 0) continue;
    const long pid = ParsePid(name, t + tag.size());
    if (pid < 0) continue;
    const size_t dash = name.find('-', t + tag.size());
    const std::string_view hex = name.substr(dash + 1);
    if (hex.size() != 8) continue;
    bool ok = true;
    for (char c : hex) ok = ok && std::isxdigit(static_cast<unsigned char>(c));
    if (ok) return pid;
  }
  return -1;
}

/// fsync of a file (never through a symbolic link) or of a directory (the destination's parent may
/// well be reached through a link). For a directory only EIO is an error: some filesystems refuse
/// to open or sync directories, and the data itself was synced already.
Status FsyncPath(const std::string& path, bool directory) {
  const int fd =
      ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : O_NOFOLLOW));
  if (fd < 0) {
    if (directory) return Status::Ok();
    return Status::Io(path + ": cannot open to flush: " + ErrnoText(errno));
  }
  const int r = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (r != 0 && (!directory || e == EIO))
    return Status::Io(path + ": fsync failed: " + ErrnoText(e));
  return Status::Ok();
}

/// renameat2 with flags; EINVAL/ENOSYS mean the filesystem or kernel lacks the flag.
int Rename2(const std::string& from, const std::string& to, unsigned flags) {
  return ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

bool FlagUnsupported(int e) { return e == EINVAL || e == ENOSYS || e == ENOTSUP; }

Status AppearedMeanwhile(const std::string& path) {
  return Status::AlreadyExists(
      path +
      ": already exists (it appeared while this run was writing; not replaced "
      "without --force)");
}

}  // namespace

std::string TempNameFor(const std::string& path) {
  const std::string clean = StripSlashes(path);
  std::string base = fs::path(clean).filename().string();
  if (base.empty() || base == "." || base == "..") base = "out";
  // Keep the whole name within NAME_MAX (255).
  if (base.size() > 200) base.resize(200);
  static thread_local std::mt19937_64 rng{std::random_device{}() ^ (uint64_t(::getpid()) << 32)};
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "%ld-%016llx", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(rng()));
  return (fs::path(ParentDir(clean)) / ("." + base + std::string(kTempMarker) + suffix)).string();
}

int RemoveStaleTemporaries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  std::vector<std::pair<std::string, bool>> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 3 || name[0] != '.') continue;
    struct stat st;
    const std::string full = (fs::path(dir) / name).string();
    if (::lstat(full.c_str(), &st) != 0) continue;
    const bool is_dir = S_ISDIR(st.st_mode);
    const long pid = TempOwnerPid(name, is_dir);
    if (pid < 0 || ProcessAlive(pid)) continue;
    stale.emplace_back(full, is_dir);
  }
  ::closedir(d);
  int removed = 0;
  for (const auto& [full, is_dir] : stale) {
    std::error_code ec;
    // remove_all never follows symbolic links: a link planted inside is removed, not its target.
    if (is_dir ? fs::remove_all(full, ec) > 0 : ::unlink(full.c_str()) == 0) ++removed;
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// AtomicFile

Result<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path,
                                                       AtomicWriteOptions options) {
  if (path.empty()) return Status::InvalidArgument("empty output path");
  std::unique_ptr<AtomicFile> f(new AtomicFile());
  f->path_ = StripSlashes(path);
  f->overwrite_ = options.overwrite;
  RemoveStaleTemporaries(ParentDir(f->path_));
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string tmp = TempNameFor(f->path_);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      f->fd_ = fd;
      f->tmp_ = tmp;
      return f;
    }
    if (errno != EEXIST) return Status::Io(tmp + ": cannot create: " + ErrnoText(errno));
  }
  return Status::Io(f->path_ + ": cannot create a unique temporary file next to it");
}

AtomicFile::~AtomicFile() {
  if (stream_)
    std::fclose(stream_);
  else if (fd_ >= 0)
    ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

std::FILE* AtomicFile::Stream() {
  if (!stream_ && fd_ >= 0) {
    stream_ = ::fdopen(fd_, "w");
    if (stream_) std::setvbuf(stream_, nullptr, _IOFBF, 1 << 20);
  }
  return stream_;
}

Status AtomicFile::Write(std::string_view data) {
  if (fd_ < 0) return Status::Internal(path_ + ": write after commit");
  if (stream_) {
    if (!data.empty() && std::fwrite(data.data(), 1, data.size(), stream_) != data.size()) {
      return Status::Io(path_ + ": write failed (temporary " + tmp_ + "): " + ErrnoText(errno));
    }
    return Status::Ok();
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t r =
        ::write(fd_, data.data() + done, std::min<size_t>(data.size() - done, size_t{1} << 30));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return Status::Io(path_ + ": write failed (temporary " + tmp_ + "): " + ErrnoText(errno));
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status AtomicFile::WriteAt(uint64_t offset, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    const size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
    const ssize_t r = ::pwrite(fd_, p + done, chunk, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return Status::Io(path_ + ": write failed (temporary " + tmp_ + "): " + ErrnoText(errno));
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

Status AtomicFile::Truncate(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return Status::Io(tmp_ + ": cannot set the size: " + ErrnoText(errno));
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (committed_ || fd_ < 0) return Status::Internal(path_ + ": committed twice");
  if (stream_) {
    errno = 0;
    const bool flushed = std::fflush(stream_) == 0 && !std::ferror(stream_);
    const int e = errno;
    if (!flushed) {
      return Status::Io(path_ + ": write failed (temporary " + tmp_ +
                        "): " + (e ? ErrnoText(e) : std::string("stream error")));
    }
  }
  if (::fsync(fd_) != 0)
    return Status::Io(path_ + ": fsync failed (temporary " + tmp_ + "): " + ErrnoText(errno));
  int close_rc;
  if (stream_) {
    close_rc = std::fclose(stream_);
    stream_ = nullptr;
  } else {
    close_rc = ::close(fd_);
  }
  fd_ = -1;
  if (close_rc != 0) return Status::Io(tmp_ + ": close failed: " + ErrnoText(errno));

  if (overwrite_) {
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return Status::Io(path_ + ": cannot rename " + tmp_ + " into place: " + ErrnoText(errno));
    }
  } else if (Rename2(tmp_, path_, RENAME_NOREPLACE) != 0) {
    const int e = errno;
    if (e == EEXIST) return AppearedMeanwhile(path_);
    if (!FlagUnsupported(e))
      return Status::Io(path_ + ": cannot rename " + tmp_ + " into place: " + ErrnoText(e));
    // No RENAME_NOREPLACE here: link() also refuses an existing destination.
    if (::link(tmp_.c_str(), path_.c_str()) != 0) {
      if (errno == EEXIST) return AppearedMeanwhile(path_);
      return Status::Io(path_ + ": cannot link " + tmp_ + " into place: " + ErrnoText(errno));
    }
    ::unlink(tmp_.c_str());
  }
  committed_ = true;
  return FsyncPath(ParentDir(path_), true);
}

// ---------------------------------------------------------------------------------------------
// AtomicDir

Result<std::unique_ptr<AtomicDir>> AtomicDir::Create(const std::string& path,
                                                     AtomicWriteOptions options) {
  if (path.empty()) return Status::InvalidArgument("empty output path");
  std::unique_ptr<AtomicDir> d(new AtomicDir());
  d->path_ = StripSlashes(path);
  d->overwrite_ = options.overwrite;
  RemoveStaleTemporaries(ParentDir(d->path_));
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string tmp = TempNameFor(d->path_);
    // mkdir never follows a symbolic link at its last component: it fails with EEXIST.
    if (::mkdir(tmp.c_str(), 0777) == 0) {
      d->tmp_ = tmp;
      return d;
    }
    if (errno != EEXIST)
      return Status::Io(tmp +
                        ": cannot create the temporary output directory: " + ErrnoText(errno));
  }
  return Status::Io(d->path_ + ": cannot create a unique temporary directory next to it");
}

AtomicDir::~AtomicDir() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

Status AtomicDir::Commit() {
  if (committed_) return Status::Internal(path_ + ": committed twice");
  // Everything inside reaches the disk before the tree gets its final name.
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(tmp_, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const auto st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(st)) MOEQ_RETURN_IF_ERROR(FsyncPath(it->path().string(), false));
    if (fs::is_directory(st)) MOEQ_RETURN_IF_ERROR(FsyncPath(it->path().string(), true));
  }
  if (ec) return Status::Io(tmp_ + ": cannot list the temporary output: " + ec.message());
  MOEQ_RETURN_IF_ERROR(FsyncPath(tmp_, true));

  if (Rename2(tmp_, path_, RENAME_NOREPLACE) == 0) {
    committed_ = true;
    return FsyncPath(ParentDir(path_), true);
  }
  int e = errno;
  if (FlagUnsupported(e)) {
    // No RENAME_NOREPLACE on this filesystem: check, then rename (a small window remains).
    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0) {
      e = EEXIST;
    } else if (std::rename(tmp_.c_str(), path_.c_str()) == 0) {
      committed_ = true;
      return FsyncPath(ParentDir(path_), true);
    } else {
      e = errno;
    }
  }
  if (e != EEXIST && e != ENOTEMPTY) {
    return Status::Io(path_ + ": cannot rename " + tmp_ + " into place: " + ErrnoText(e));
  }
  if (!overwrite_) return AppearedMeanwhile(path_);
  // --force: swap the trees atomically, then delete the old one (now under our temporary name).
  if (Rename2(tmp_, path_, RENAME_EXCHANGE) == 0) {
    committed_ = true;
    fs::remove_all(tmp_, ec);
    return FsyncPath(ParentDir(path_), true);
  }
  e = errno;
  if (!FlagUnsupported(e))
    return Status::Io(path_ + ": cannot swap in " + tmp_ + ": " + ErrnoText(e));
  // No RENAME_EXCHANGE: move the old output aside under a temporary name, then rename.
  const std::string aside = TempNameFor(path_);
  if (std::rename(path_.c_str(), aside.c_str()) != 0) {
    return Status::Io(path_ + ": cannot move the existing output aside: " + ErrnoText(errno));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    e = errno;
    std::rename(aside.c_str(), path_.c_str());
    return Status::Io(path_ + ": cannot rename " + tmp_ + " into place: " + ErrnoText(e));
  }
  committed_ = true;
  fs::remove_all(aside, ec);
  return FsyncPath(ParentDir(path_), true);
}

Status WriteFileAtomic(const std::string& path, std::string_view contents,
                       AtomicWriteOptions options) {
  MOEQ_ASSIGN_OR_RETURN(auto f, AtomicFile::Create(path, options));
  MOEQ_RETURN_IF_ERROR(f->Write(contents));
  return f->Commit();
}

}  // namespace moeq
