// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
// ext4 and LevelDB. Value(data) of "123456789" is 0xE3069283.
#pragma once

#include <cstdint>
#include <string_view>

namespace edgesync::crc32c {

// Extends `crc` (the value of some earlier data) with `data`.
uint32_t Extend(uint32_t crc, std::string_view data);
inline uint32_t Value(std::string_view data) { return Extend(0, data); }

}  // namespace edgesync::crc32c
