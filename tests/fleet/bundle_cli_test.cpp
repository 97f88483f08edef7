// `edgesync bundle keygen | sign | verify`, run as the operator runs them:
// the exit codes, what they print, and what they refuse.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "base/env.h"
#include "harness/process.h"
#include "tests/support/temp_dir.h"

namespace edgesync::testing {
namespace {

class BundleCli : public ::testing::Test {
 protected:
  // Runs `edgesync ARGS...`; its exit code, with stdout and stderr in out_ and err_.
  int Edgesync(std::vector<std::string> args) {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync")};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = dir_ / "stdout";
    o.stderr_path = dir_ / "stderr";
    Result<int> code = harness::RunToEnd(o, std::chrono::seconds(60));
    EXPECT_TRUE(code.ok()) << code.status().ToString();
    out_ = harness::ReadWholeFile(o.stdout_path);
    err_ = harness::ReadWholeFile(o.stderr_path);
    return code.ok() ? *code : -1;
  }

  static bool Has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  harness::TempDir dir_ = NewTempDir();
  std::string out_, err_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST_F(BundleCli, KeygenSignVerifyAndRefusals) {
  // keygen: both files, the private one private, and never replaced.
  ASSERT_EQ(Edgesync({"bundle", "keygen", "--out", dir_ / "keys"}), 0) << err_;
  EXPECT_TRUE(Has(out_, "key id ")) << out_;
  EXPECT_TRUE(Has(out_, dir_ / "keys/fleet.key")) << out_;
  EXPECT_TRUE(Has(out_, dir_ / "keys/fleet.pub")) << out_;
  const std::string key_id = out_.substr(7, 16);
  EXPECT_EQ(ModeOf(dir_ / "keys/fleet.key"), 0600u);
  EXPECT_TRUE(Has(harness::ReadWholeFile(dir_ / "keys/fleet.pub"), "-----BEGIN PUBLIC KEY-----"));
  EXPECT_EQ(Edgesync({"bundle", "keygen", "--out", dir_ / "keys"}), 2);
  EXPECT_TRUE(Has(err_, "exists")) << err_;
  ASSERT_EQ(Edgesync({"bundle", "keygen", "--out", dir_ / "other"}), 0) << err_;

  // A configuration directory.
  ASSERT_EQ(::mkdir((dir_ / "conf").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir_ / "conf/scripts").c_str(), 0700), 0);
  std::ofstream(dir_ / "conf/edgesync.toml") << "[agent]\nstats_interval = \"5s\"\n";
  std::ofstream(dir_ / "conf/scripts/mask.lua") << "return 1\n";

  // sign
  const std::string bundle = dir_ / "conf.bundle";
  ASSERT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.key", "--in", dir_ / "conf", "--out",
                      bundle, "--version", "3"}),
            0)
      << err_;
  EXPECT_TRUE(Has(out_, "bundle " + bundle + ": version 3, 2 files, ")) << out_;
  EXPECT_TRUE(Has(out_, "signed by key " + key_id)) << out_;
  EXPECT_FALSE(Has(harness::ReadWholeFile(bundle + ".tmp"), "ESBUNDLE"));

  // verify with the right key, among others: valid.
  ASSERT_EQ(Edgesync({"bundle", "verify", "--key", dir_ / "other/fleet.pub", "--key", dir_ / "keys/fleet.pub",
                      bundle}),
            0)
      << err_;
  EXPECT_TRUE(Has(out_, "version 3")) << out_;
  EXPECT_TRUE(Has(out_, key_id)) << out_;
  EXPECT_TRUE(Has(out_, "edgesync.toml")) << out_;
  EXPECT_TRUE(Has(out_, "scripts/mask.lua")) << out_;

  // verify with another fleet's key: refused, exit 2, the reason on stderr.
  EXPECT_EQ(Edgesync({"bundle", "verify", "--key", dir_ / "other/fleet.pub", bundle}), 2);
  EXPECT_TRUE(Has(err_, "signed by key " + key_id + ", which is not one of the fleet's public keys")) << err_;
  EXPECT_EQ(out_, "");

  // An altered bundle: refused.
  std::string bytes = harness::ReadWholeFile(bundle);
  bytes[bytes.find("return 1")] = 'R';
  std::ofstream(dir_ / "altered.bundle", std::ios::binary) << bytes;
  EXPECT_EQ(Edgesync({"bundle", "verify", "--key", dir_ / "keys/fleet.pub", dir_ / "altered.bundle"}), 2);
  EXPECT_TRUE(Has(err_, "bad signature")) << err_;

  // sign refuses to replace the bundle, unless --force.
  const std::string before = harness::ReadWholeFile(bundle);
  EXPECT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.key", "--in", dir_ / "conf", "--out",
                      bundle, "--version", "4"}),
            2);
  EXPECT_TRUE(Has(err_, "exists")) << err_;
  EXPECT_TRUE(Has(err_, "--force")) << err_;
  EXPECT_EQ(harness::ReadWholeFile(bundle), before);
  ASSERT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.key", "--in", dir_ / "conf", "--out",
                      bundle, "--version", "4", "--force"}),
            0)
      << err_;
  ASSERT_EQ(Edgesync({"bundle", "verify", "--key", dir_ / "keys/fleet.pub", bundle}), 0) << err_;
  EXPECT_TRUE(Has(out_, "version 4")) << out_;

  // Bad input exits 2 with what to do: the public key to sign with, a
  // directory without edgesync.toml, version 0.
  EXPECT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.pub", "--in", dir_ / "conf", "--out",
                      dir_ / "x.bundle", "--version", "1"}),
            2);
  EXPECT_TRUE(Has(err_, "not a private key")) << err_;
  EXPECT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.key", "--in", dir_ / "conf/scripts",
                      "--out", dir_ / "x.bundle", "--version", "1"}),
            2);
  EXPECT_TRUE(Has(err_, "no edgesync.toml")) << err_;
  EXPECT_EQ(Edgesync({"bundle", "sign", "--key", dir_ / "keys/fleet.key", "--in", dir_ / "conf", "--out",
                      dir_ / "x.bundle", "--version", "0"}),
            2);
  EXPECT_TRUE(Has(err_, "--version")) << err_;
  EXPECT_FALSE(Env::Default()->Exists(dir_ / "x.bundle"));
}

}  // namespace
}  // namespace edgesync::testing
