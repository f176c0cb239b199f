// Scratch files for the fuzz targets that read from a path.
#include "fuzz/fuzz_common.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace moeq::fuzz {

const std::string& ScratchDir() {
  // Never destroyed: the atexit clean-up runs after static destructors would have run.
  static const std::string* dir = [] {
    const char* base = std::getenv("TMPDIR");
    auto* d = new std::string(std::string(base && *base ? base : "/tmp") + "/moeq-fuzz-XXXXXX");
    if (::mkdtemp(d->data()) == nullptr) std::abort();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return *dir;
}

std::string WriteInput(const uint8_t* data, size_t size, std::string_view ext) {
  const std::string path = ScratchDir() + "/input" + std::string(ext);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t r = ::write(fd, data + done, size - done);
    if (r <= 0) std::abort();
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  return path;
}

}  // namespace moeq::fuzz
