// Progress reporting for long work: a redrawn bar with ETA on a terminal, plain periodic lines
// (at most one every few seconds) when stderr is not a TTY.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace moeq {

class Progress {
 public:
  /// `total` units of work, described by `label` ("analyze", "quantize"). `unit` names a unit.
  Progress(std::string label, int64_t total, std::string unit = "tensors");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Adds `n` finished units. Thread-safe; prints at most ~10 times a second on a TTY.
  void Advance(int64_t n = 1, const std::string& detail = "");
  /// Prints the final line (also done by the destructor).
  void Finish();

  /// Seconds since construction.
  double elapsed_seconds() const;

 private:
  void Print(bool final_line);
  std::string label_, unit_, detail_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
  std::mutex mu_;
};

}  // namespace moeq
