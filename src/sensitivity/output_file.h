// A results file written through moeq::AtomicFile (unique temporary, renamed by Commit());
// private to the sensitivity module (the analysis and the shard merge).
#pragma once

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "moeq/base/atomic_file.h"
#include "moeq/base/status.h"

namespace moeq::sensitivity {

class OutputFile {
 public:
  Status Open(const std::string& path, bool overwrite) {
    MOEQ_ASSIGN_OR_RETURN(file_, AtomicFile::Create(path, {.overwrite = overwrite}));
    if (!file_->Stream())
      return Status::Io(file_->temp_path() + ": cannot open a stream: " + std::strerror(errno));
    return Status::Ok();
  }
  Status Write(std::string_view s) { return file_->Write(s); }
  Status Commit() { return file_->Commit(); }

 private:
  std::unique_ptr<AtomicFile> file_;
};

}  // namespace moeq::sensitivity
