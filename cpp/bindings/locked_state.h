// One stream's native state and the lock that serializes calls on it.
//
// Native calls drop the GIL, so Python threads sharing one stream would
// otherwise race; the lock is only ever taken with the GIL released, so the
// two can never deadlock. State is any kernel state with an int64 `frames`.
#ifndef FRAMEGATE_CPP_BINDINGS_LOCKED_STATE_H_
#define FRAMEGATE_CPP_BINDINGS_LOCKED_STATE_H_

#include <cstdint>
#include <mutex>
#include <utility>

#include <pybind11/pybind11.h>

namespace framegate::bindings {

template <typename State>
class LockedState {
 public:
  explicit LockedState(State state) : state_(std::move(state)) {}
  std::mutex& mutex() { return mutex_; }
  State& state() { return state_; }
  std::int64_t frames() {
    pybind11::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return state_.frames;
  }

 private:
  std::mutex mutex_;
  State state_;
};

}  // namespace framegate::bindings

#endif  // FRAMEGATE_CPP_BINDINGS_LOCKED_STATE_H_
