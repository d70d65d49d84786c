// A forward iterator over any container with size() and operator[](size_t), by index: for the
// string tables that hand out string_views computed on the fly rather than stored elements.
#pragma once

#include <cstddef>
#include <iterator>
#include <utility>

namespace saola {

template <typename Container>
class IndexIterator {
 public:
  using value_type = decltype(std::declval<const Container&>()[size_t{0}]);
  using iterator_category = std::forward_iterator_tag;
  using difference_type = std::ptrdiff_t;
  using pointer = void;
  using reference = value_type;

  IndexIterator() = default;
  IndexIterator(const Container* container, size_t index)
      : container_(container), index_(index) {}

  value_type operator*() const { return (*container_)[index_]; }
  IndexIterator& operator++() {
    ++index_;
    return *this;
  }
  IndexIterator operator++(int) {
    IndexIterator old = *this;
    ++index_;
    return old;
  }
  bool operator==(const IndexIterator& other) const { return index_ == other.index_; }

 private:
  const Container* container_ = nullptr;
  size_t index_ = 0;
};

}  // namespace saola
