// A fresh X25519 key pair for a test (the central service's, in production).
#pragma once

#include <gtest/gtest.h>

#include "buffer/crypto.h"

namespace edgesync::testing {

struct TestKeyPair {
  crypto::Key private_key{}, public_key{};
  TestKeyPair() {
    EXPECT_TRUE(crypto::Random(&private_key).ok());
    public_key = *crypto::X25519PublicKey(private_key);
  }
};

}  // namespace edgesync::testing
