#pragma once
// Control-path result type: a value, or a message saying what went wrong and how to fix it.
// (C++20 has no std::expected; this is the small part of it the control plane needs.)

#include <optional>
#include <string>
#include <utility>

namespace sluice {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}      // NOLINT: implicit on purpose
  Result(Error e) : error_(std::move(e.message)) {}  // NOLINT

  explicit operator bool() const noexcept { return value_.has_value(); }
  bool ok() const noexcept { return value_.has_value(); }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  const std::string& error() const noexcept { return error_; }

 private:
  std::optional<T> value_;
  std::string error_;
};

// Result<void>: success or an error message.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : error_(std::move(e.message)), ok_(false) {}  // NOLINT
  explicit operator bool() const noexcept { return ok_; }
  bool ok() const noexcept { return ok_; }
  const std::string& error() const noexcept { return error_; }

 private:
  std::string error_;
  bool ok_ = true;
};

}  // namespace sluice
