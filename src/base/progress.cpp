// Progress: a bar with ETA on a terminal, plain periodic lines otherwise. Writes to stderr.
#include "moeq/base/progress.h"

#include <unistd.h>

#include <cstdio>

namespace moeq {
namespace {

std::string FormatDuration(double s) {
  char buf[32];
  if (s < 0) s = 0;
  const int total = static_cast<int>(s + 0.5);
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%dh%02dm", total / 3600, (total / 60) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%d:%02d", total / 60, total % 60);
  }
  return buf;
}

}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

Progress::~Progress() { Finish(); }

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Advance(int64_t n, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  done_ += n;
  if (!detail.empty()) detail_ = detail;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since >= (tty_ ? 0.1 : 5.0)) {
    last_print_ = now;
    Print(false);
  }
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (tty_ || total_ > 0) Print(true);
}

void Progress::Print(bool final_line) {
  const double el = elapsed_seconds();
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
  const double eta = (frac > 0 && !final_line) ? el * (1.0 - frac) / frac : 0.0;
  char line[512];
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth + 0.5);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::snprintf(line, sizeof line, "\r%s [%s] %lld/%lld %s %5.1f%% %s %s %.40s\033[K",
                  label_.c_str(), bar.c_str(), static_cast<long long>(done_),
                  static_cast<long long>(total_), unit_.c_str(), 100.0 * frac,
                  final_line ? "in" : "ETA", FormatDuration(final_line ? el : eta).c_str(),
                  detail_.c_str());
    std::fputs(line, stderr);
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::snprintf(line, sizeof line, "%s: %lld/%lld %s (%.1f%%), %s %s%s%s\n", label_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                  100.0 * frac, final_line ? "took" : "ETA",
                  FormatDuration(final_line ? el : eta).c_str(), detail_.empty() ? "" : ", ",
                  detail_.c_str());
    std::fputs(line, stderr);
  }
  std::fflush(stderr);
}

}  // namespace moeq
