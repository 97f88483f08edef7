// Test helpers for envelopes: a fresh X25519 key pair (the central
// service's, in production), and an envelope's checksum put right after a
// test changed its bytes (what a forger who knows the format would do, so
// that only the cryptography or the decoder's checks can refuse it).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/crypto.h"
#include "format/format.h"

namespace edgesync::testing {

struct TestKeyPair {
  crypto::Key private_key{}, public_key{};
  TestKeyPair() {
    EXPECT_TRUE(crypto::Random(&private_key).ok());
    public_key = *crypto::X25519PublicKey(private_key);
  }
};

inline std::string WithFixedCrc(std::string e) {
  const size_t covered = e.size() - format::kEnvelopeTrailer;
  StoreU32(e.data() + covered, crc32c::Value(std::string_view(e).substr(0, covered)));
  return e;
}

}  // namespace edgesync::testing
