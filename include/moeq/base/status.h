// Status and Result<T>: errors as values across libmoeq.
//
// Library code never exits or throws across its public API. Failures are
// returned as a Status whose message names the file, the tensor and the field
// that is wrong. Only tools/*/main.cpp turns a Status into an exit code.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace moeq {

/// Error categories. Values are stable: they appear in logs and tests.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  ///< bad option or usage (exit code 2)
  kNotFound = 2,         ///< a file, tensor or key that must exist is missing
  kCorruption = 3,       ///< input data is malformed
  kUnsupported = 4,      ///< valid input that moeq does not handle
  kIo = 5,               ///< the operating system refused (open, write, rename)
  kInternal = 6,         ///< a bug in moeq
  kAlreadyExists = 7,    ///< an output exists and --force was not given
  kGateFailed = 8,       ///< a quality gate was exceeded (exit code 3)
};

/// Name of a status code, e.g. "Corruption".
std::string_view StatusCodeName(StatusCode code);

/// Success, or an error code with a human-readable message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
  static Status Io(std::string m) { return {StatusCode::kIo, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status GateFailed(std::string m) { return {StatusCode::kGateFailed, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  /// "Corruption: <message>", or "OK".
  std::string ToString() const;

  /// The same error with "<context>: " put in front of its message (no-op when ok).
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

/// Process exit code for a status: 0 ok, 2 usage error, 3 quality gate failed, 1 otherwise.
int ExitCodeFor(const Status& status);

/// A value of type T, or the Status explaining why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result constructed from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  /// The error; OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

namespace internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr);
}  // namespace internal

}  // namespace moeq

#define MOEQ_CONCAT_INNER_(a, b) a##b
#define MOEQ_CONCAT_(a, b) MOEQ_CONCAT_INNER_(a, b)

/// Returns from the enclosing function when `expr` (a Status) is not ok.
#define MOEQ_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::moeq::Status moeq_status_ = (expr);        \
    if (!moeq_status_.ok()) return moeq_status_; \
  } while (0)

#define MOEQ_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

/// `MOEQ_ASSIGN_OR_RETURN(auto x, F())`: binds the value of a Result or returns its error.
/// It expands to several statements: never use it as the body of an unbraced if/for.
#define MOEQ_ASSIGN_OR_RETURN(lhs, expr) \
  MOEQ_ASSIGN_OR_RETURN_IMPL_(MOEQ_CONCAT_(moeq_result_, __LINE__), lhs, expr)

/// Aborts with file and line when an internal invariant does not hold (a moeq bug, never bad
/// input).
#define MOEQ_CHECK(cond) \
  ((cond) ? (void)0 : ::moeq::internal::CheckFailed(__FILE__, __LINE__, #cond))
