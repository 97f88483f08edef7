// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
// ext4 and LevelDB. Value(data) of "123456789" is 0xE3069283.
//
// Where Debian ships ISA-L for the target (libisal-dev: amd64 and arm64 in
// bookworm, which the build finds by itself), Extend runs ISA-L's
// crc32_iscsi, which picks the CPU's CRC32C instructions at run time
// (SSE4.2 on x86-64, the ARMv8 CRC extension on arm64). Elsewhere, and when
// the library is absent, it runs the portable slicing-by-8 below. Both give
// the same values: the journal's and the envelope's checksums (FORMAT.md)
// do not depend on how the agent was built.
#pragma once

#include <cstdint>
#include <string_view>

namespace edgesync::crc32c {

// Extends `crc` (the value of some earlier data) with `data`.
uint32_t Extend(uint32_t crc, std::string_view data);
inline uint32_t Value(std::string_view data) { return Extend(0, data); }

// The portable implementation Extend falls back to; the same values. For
// tests and benchmarks, which compare the two.
uint32_t ExtendPortable(uint32_t crc, std::string_view data);

// Which implementation Extend runs: "isa-l" or "portable".
const char* Implementation();

}  // namespace edgesync::crc32c
