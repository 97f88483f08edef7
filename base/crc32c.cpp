#include "base/crc32c.h"

#include <algorithm>
#include <array>

#ifdef EDGESYNC_HAVE_ISAL
#include <isa-l/crc.h>
#endif

namespace edgesync::crc32c {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli

// kTables[0] is the byte-at-a-time table; kTables[k][b] is the CRC of byte
// b followed by k zero bytes, so eight bytes fold in with eight lookups and
// no dependency between them (slicing-by-8).
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
  return t;
}

constexpr auto kTables = MakeTables();

inline uint32_t LoadLe32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

uint32_t ExtendPortable(uint32_t crc, std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  uint32_t c = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t lo = c ^ LoadLe32(p);
    const uint32_t hi = LoadLe32(p + 4);
    c = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xFF] ^ kTables[2][(hi >> 8) & 0xFF] ^
        kTables[1][(hi >> 16) & 0xFF] ^ kTables[0][hi >> 24];
  }
  for (; n > 0; ++p, --n) c = kTables[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return ~c;
}

#ifdef EDGESYNC_HAVE_ISAL

// crc32_iscsi neither inverts its seed nor its result, and takes an int
// length: the inversions are ours, and larger inputs go in slices.
uint32_t Extend(uint32_t crc, std::string_view data) {
  auto* p = reinterpret_cast<unsigned char*>(const_cast<char*>(data.data()));  // read only
  size_t n = data.size();
  uint32_t c = ~crc;
  while (n > 0) {
    const size_t slice = std::min<size_t>(n, size_t{1} << 30);
    c = crc32_iscsi(p, static_cast<int>(slice), c);
    p += slice;
    n -= slice;
  }
  return ~c;
}

const char* Implementation() { return "isa-l"; }

#else

uint32_t Extend(uint32_t crc, std::string_view data) { return ExtendPortable(crc, data); }

const char* Implementation() { return "portable"; }

#endif

}  // namespace edgesync::crc32c
