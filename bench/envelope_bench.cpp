// edgesync-bench-envelope: what sealing a batch costs in CPU and in bytes on
// the wire, in process, beside baselines measured in the same run.
//
// 1. Throughput (MB/s of raw body) of zstd alone, SealEnvelope plain and
//    encrypted, OpenEnvelope plain and encrypted, on batch bodies of 4 KiB,
//    64 KiB and 512 KiB of ~300-byte payment JSON events. Baseline:
//    AES-256-GCM alone (OpenSSL EVP, one context, as `openssl speed -evp
//    aes-256-gcm` measures it) on buffers of the same sizes.
// 2. Bytes on the wire per payload byte for batches of 1, 10, 100 and 1000
//    events: the encrypted envelope (zstd level 3) and its compressed body
//    alone, without and with a 16 KiB dictionary trained on other events.
//    With --series DIR, envelope / payload by events per batch (also 2, 5,
//    20, 50, 200 and 500) as DIR/compression_ratio.tsv
//    (bench/plots/compression_ratio.gp).
// 3. Device identity: µs per SealEnvelope and OpenEnvelope of encrypted
//    batches of 10, 100 and 1000 events, unsigned (format version 1) and
//    signed with the device's Ed25519 key and verified against an enrolled
//    key (version 2), and the primitives alone: an Ed25519 signature and
//    its verification, and an X25519 agreement (what HPKE's auth mode, the
//    alternative, would add to each side instead).
//
// Prints a Markdown section to stdout (script/bench appends it to
// bench/RESULTS.md); per-run figures go to stderr.
#include <openssl/evp.h>
#include <zstd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/coding.h"
#include "bench/median.h"
#include "bench/payment_events.h"
#include "bench/series.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "format/format.h"
#include "format/identity.h"
#include "format/record.h"
#include "harness/publisher.h"

namespace {

using Clock = std::chrono::steady_clock;
using edgesync::bench::Median;

using edgesync::bench::EventGenerator;

edgesync::Record ToRecord(const EventGenerator::Event& e) {
  edgesync::Record r;
  r.topic = e.topic;
  r.received_at_us = e.received_at_us;
  r.qos = 1;
  r.payload = e.payload;
  return r;
}

// A batch as the sealer builds it: the raw body and its header.
struct Batch {
  edgesync::BatchHeader header;
  std::string body;
  uint64_t payload_bytes = 0;
};

using EventSource = std::function<EventGenerator::Event()>;

// The events the other benches send (harness::PaymentEvent): one template
// with a counter, padded with 'x'. Compresses far better than real traffic;
// measured beside the generator above to show the range.
EventSource TemplateEvents(uint64_t first_seq) {
  return [seq = first_seq, now = int64_t{1'795'000'000'000'000}]() mutable {
    now += 10'000;
    return EventGenerator::Event{"terminal/t1/payment/authorization",
                                 edgesync::harness::PaymentEvent("pub", seq++), now};
  };
}

Batch MakeBatch(const EventSource& next, size_t max_events, size_t max_body_bytes) {
  Batch b;
  b.header.device_id = "site-0001";
  b.header.stream = "payments";
  b.header.batch_seq = 1;
  std::string one;
  while (b.header.event_count < max_events) {
    const edgesync::Record r = ToRecord(next());
    one.clear();
    edgesync::EncodeRecord(r, &one);
    if (b.header.event_count > 0 && b.body.size() + 4 + one.size() > max_body_bytes) break;
    edgesync::AppendToBody(one, &b.body);
    if (b.header.event_count == 0) b.header.first_event_us = r.received_at_us;
    b.header.last_event_us = r.received_at_us;
    b.payload_bytes += r.payload.size();
    ++b.header.event_count;
  }
  return b;
}

// Runs `op` (one pass over `bytes` bytes) for at least `seconds` and at least
// 3 times; MB/s (10^6 bytes) of those bytes. 0 if op fails.
double Throughput(const std::function<bool()>& op, size_t bytes, double seconds) {
  if (!op()) return 0;  // warm: contexts, caches, page faults
  uint64_t n = 0;
  const auto start = Clock::now();
  double took = 0;
  do {
    if (!op()) return 0;
    ++n;
    took = std::chrono::duration<double>(Clock::now() - start).count();
  } while (took < seconds || n < 3);
  return static_cast<double>(bytes) * static_cast<double>(n) / took / 1e6;
}

// AES-256-GCM alone, one reused EVP context as `openssl speed -evp` does:
// the least an encrypted envelope can cost on top of compressing.
class GcmBaseline {
 public:
  GcmBaseline() : ctx_(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free) {
    key_.fill(0x42);
    nonce_.fill(0x24);
    ok_ = ctx_ != nullptr && EVP_EncryptInit_ex(ctx_.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1;
  }
  bool Seal(const std::string& plain, std::string* out) {
    out->resize(plain.size() + edgesync::crypto::kTagBytes);
    auto* o = reinterpret_cast<unsigned char*>(out->data());
    int len = 0, fin = 0;
    ++nonce_[0];  // a fresh nonce per message, as a real sealer would
    return ok_ && EVP_EncryptInit_ex(ctx_.get(), nullptr, nullptr, key_.data(), nonce_.data()) == 1 &&
           EVP_EncryptUpdate(ctx_.get(), o, &len, reinterpret_cast<const unsigned char*>(plain.data()),
                             static_cast<int>(plain.size())) == 1 &&
           EVP_EncryptFinal_ex(ctx_.get(), o + len, &fin) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_GET_TAG, edgesync::crypto::kTagBytes,
                               o + len + fin) == 1;
  }

 private:
  std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> ctx_;
  edgesync::crypto::Key key_;
  edgesync::crypto::Nonce nonce_;
  bool ok_ = false;
};

struct Op {
  const char* name;
  std::function<bool()> run;
};

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  double seconds = 0.2;
  std::string series_dir;
  CLI::App app{"edgesync-bench-envelope: seal/open throughput beside AES-256-GCM alone, and "
               "envelope bytes per payload byte with and without a dictionary"};
  app.add_option("--runs", runs, "runs of each throughput figure (median reported)")->capture_default_str();
  app.add_option("--seconds", seconds, "length of one throughput measurement")->capture_default_str();
  app.add_option("--series", series_dir,
                 "write envelope / payload by events per batch (compression_ratio.tsv) into this directory");
  CLI11_PARSE(app, argc, argv);
  if (runs < 1 || seconds <= 0) {
    std::fprintf(stderr, "bench: --runs and --seconds must be positive\n");
    return 2;
  }

  // The reader's key pair; the sealer holds only the public key.
  edgesync::crypto::Key private_key{};
  if (!edgesync::crypto::Random(&private_key).ok()) return 1;
  auto public_key = edgesync::crypto::X25519PublicKey(private_key);
  if (!public_key.ok()) return 1;
  const edgesync::Recipient recipient = edgesync::Recipient::For(*public_key);
  edgesync::Keyring keys;
  if (!keys.AddPrivate(private_key).ok()) return 1;
  edgesync::SealOptions plain_opts, sealed_opts;
  sealed_opts.recipient = &recipient;
  edgesync::OpenOptions open_opts;
  open_opts.keys = &keys;

  // 1. Throughput.
  const std::vector<size_t> sizes = {4 << 10, 64 << 10, 512 << 10};
  EventGenerator gen(1);
  std::vector<Batch> batches;
  for (size_t size : sizes) batches.push_back(MakeBatch([&gen] { return gen.Next(); }, SIZE_MAX, size));

  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  GcmBaseline gcm;
  const char* kNames[] = {"AES-256-GCM alone (baseline)", "zstd -3 compress alone",
                          "zstd decompress alone", "SealEnvelope, plain (zstd -3)",
                          "SealEnvelope, encrypted (zstd -3)", "OpenEnvelope, plain",
                          "OpenEnvelope, encrypted"};
  constexpr size_t kOps = std::size(kNames);
  // results[op][size] = MB/s per run
  std::vector<std::vector<std::vector<double>>> results(kOps, std::vector<std::vector<double>>(sizes.size()));
  for (size_t s = 0; s < sizes.size(); ++s) {
    const Batch& b = batches[s];
    std::string out(ZSTD_compressBound(b.body.size()), '\0');
    const size_t clen = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), b.body.data(), b.body.size(), 3);
    if (ZSTD_isError(clen)) return 1;
    const std::string compressed = out.substr(0, clen);
    std::string raw(b.body.size(), '\0');
    auto plain_env = edgesync::SealEnvelope(b.header, b.body, plain_opts);
    auto sealed_env = edgesync::SealEnvelope(b.header, b.body, sealed_opts);
    if (!plain_env.ok() || !sealed_env.ok()) {
      std::fprintf(stderr, "bench: cannot seal\n");
      return 1;
    }
    const Op ops[kOps] = {
        {kNames[0], [&] { return gcm.Seal(b.body, &out); }},
        {kNames[1], [&] {
           return !ZSTD_isError(ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), b.body.data(),
                                                  b.body.size(), 3));
         }},
        {kNames[2], [&] {
           return ZSTD_decompressDCtx(dctx.get(), raw.data(), raw.size(), compressed.data(),
                                      compressed.size()) == raw.size();
         }},
        {kNames[3], [&] { return edgesync::SealEnvelope(b.header, b.body, plain_opts).ok(); }},
        {kNames[4], [&] { return edgesync::SealEnvelope(b.header, b.body, sealed_opts).ok(); }},
        {kNames[5], [&] { return edgesync::OpenEnvelope(*plain_env, open_opts).ok(); }},
        {kNames[6], [&] { return edgesync::OpenEnvelope(*sealed_env, open_opts).ok(); }},
    };
    // Runs outside, operations inside: noise on the shared machine falls on
    // all of them alike.
    for (int run = 0; run < runs; ++run) {
      for (size_t i = 0; i < kOps; ++i) {
        const double mbs = Throughput(ops[i].run, b.body.size(), seconds);
        if (mbs <= 0) {
          std::fprintf(stderr, "bench: %s failed\n", ops[i].name);
          return 1;
        }
        results[i][s].push_back(mbs);
        std::fprintf(stderr, "bench: %zu KiB body (%u events), run %d: %s %.0f MB/s\n",
                     b.body.size() >> 10, b.header.event_count, run + 1, ops[i].name, mbs);
      }
    }
  }

  // 2. Bytes on the wire per payload byte, for both kinds of events. Each
  // dictionary is trained on other events of the same kind, never on the
  // ones measured.
  struct Wire {
    const char* events_kind;
    size_t events;
    double payload, envelope, body, dict_envelope, dict_body, level19_envelope;
    bool in_table;  // else only in the --series file
  };
  // The compressed body is the envelope's body_len (FORMAT.md, offset 50)
  // less the 108 bytes of encryption.
  auto body_bytes = [](const std::string& env) {
    return static_cast<double>(edgesync::LoadU32(env.data() + 50) - edgesync::format::kSealOverhead);
  };
  std::vector<Wire> wire;
  EventGenerator train_gen(2), batch_gen(3);
  const std::pair<const char*, std::pair<EventSource, EventSource>> kinds[] = {
      {"generator (random ids)", {[&] { return train_gen.Next(); }, [&] { return batch_gen.Next(); }}},
      {"harness::PaymentEvent (template)", {TemplateEvents(1'000'000), TemplateEvents(1)}},
  };
  for (const auto& [kind, sources] : kinds) {
    std::vector<std::string> samples;
    for (int i = 0; i < 2000; ++i) {
      samples.emplace_back();
      edgesync::EncodeRecord(ToRecord(sources.first()), &samples.back());
    }
    auto trained = edgesync::TrainDictionary(samples, 16 << 10);
    if (!trained.ok()) {
      std::fprintf(stderr, "bench: %s\n", trained.status().ToString().c_str());
      return 1;
    }
    auto dict = edgesync::Dictionary::Load(*trained, 3);
    if (!dict.ok()) return 1;
    edgesync::SealOptions dict_opts = sealed_opts, level19_opts = sealed_opts;
    dict_opts.dictionary = dict->get();
    level19_opts.zstd_level = 19;
    // The table's batch sizes first, so its batches hold the same events
    // whatever the plot adds.
    for (size_t events : {1, 10, 100, 1000, 2, 5, 20, 50, 200, 500}) {
      const Batch b = MakeBatch(sources.second, events, edgesync::format::kMaxBodyBytes);
      auto env = edgesync::SealEnvelope(b.header, b.body, sealed_opts);
      auto denv = edgesync::SealEnvelope(b.header, b.body, dict_opts);
      auto env19 = edgesync::SealEnvelope(b.header, b.body, level19_opts);
      if (!env.ok() || !denv.ok() || !env19.ok()) {
        std::fprintf(stderr, "bench: cannot seal a %zu-event batch\n", events);
        return 1;
      }
      wire.push_back({kind, events, static_cast<double>(b.payload_bytes),
                      static_cast<double>(env->size()), body_bytes(*env),
                      static_cast<double>(denv->size()), body_bytes(*denv),
                      static_cast<double>(env19->size()),
                      events == 1 || events == 10 || events == 100 || events == 1000});
      std::fprintf(stderr,
                   "bench: %s, %zu events: payload %" PRIu64 " bytes, raw body %zu, envelope %zu "
                   "(body %.0f), with dictionary %zu (body %.0f), zstd -19 %zu\n",
                   kind, events, b.payload_bytes, b.body.size(), env->size(), body_bytes(*env),
                   denv->size(), body_bytes(*denv), env19->size());
    }
  }

  if (!series_dir.empty()) {
    // envelope / payload by events per batch, for each kind of events
    // without and with the dictionary (the kind's batches in size order).
    std::vector<std::pair<std::string, edgesync::bench::Series>> blocks;
    for (const auto& [kind, sources] : kinds) {
      edgesync::bench::Series plain, dict;
      for (const Wire& w : wire) {
        if (std::string_view(w.events_kind) != kind) continue;
        plain.emplace_back(static_cast<double>(w.events), w.envelope / w.payload);
        dict.emplace_back(static_cast<double>(w.events), w.dict_envelope / w.payload);
      }
      std::sort(plain.begin(), plain.end());
      std::sort(dict.begin(), dict.end());
      blocks.emplace_back(std::string(kind) + ", no dictionary", std::move(plain));
      blocks.emplace_back(std::string(kind) + ", 16 KiB dictionary", std::move(dict));
    }
    if (!edgesync::bench::WriteSeries(series_dir + "/compression_ratio.tsv",
                                      "edgesync-bench-envelope: encrypted envelope (zstd -3) / payload "
                                      "bytes by events per batch",
                                      "events_per_batch\tenvelope_per_payload", blocks)) {
      std::fprintf(stderr, "bench: cannot write %s/compression_ratio.tsv\n", series_dir.c_str());
      return 1;
    }
  }

  // 3. Device identity: the price of a signature per batch.
  const edgesync::DeviceSigner signer = *edgesync::DeviceSigner::Generate();
  edgesync::DeviceKeySet enrolled;
  const edgesync::DevicePublicKey pub = *edgesync::DevicePublicKey::FromRaw(signer.public_key());
  enrolled.Add("site-0001", pub, false);
  edgesync::SealOptions signed_opts = sealed_opts;
  signed_opts.signer = &signer;
  edgesync::OpenOptions verify_opts = open_opts;
  verify_opts.device_keys = &enrolled;
  struct Identity {
    size_t events;
    size_t unsigned_bytes, signed_bytes;
    std::vector<double> seal_us, seal_signed_us, open_us, open_verified_us;
  };
  std::vector<Identity> identity;
  // µs per call, over `seconds`.
  auto micros = [&](const std::function<bool()>& op) {
    const double per_s = Throughput(op, 1'000'000, seconds);  // "MB/s" of 1 MB per call = calls/s
    return per_s > 0 ? 1e6 / per_s : -1;
  };
  EventGenerator id_gen(4);
  for (size_t events : {10, 100, 1000}) {
    const Batch b = MakeBatch([&id_gen] { return id_gen.Next(); }, events, edgesync::format::kMaxBodyBytes);
    auto plain = edgesync::SealEnvelope(b.header, b.body, sealed_opts);
    auto sig = edgesync::SealEnvelope(b.header, b.body, signed_opts);
    if (!plain.ok() || !sig.ok() || !edgesync::OpenEnvelope(*sig, verify_opts).ok()) {
      std::fprintf(stderr, "bench: cannot seal or verify a signed %zu-event batch\n", events);
      return 1;
    }
    Identity row{events, plain->size(), sig->size(), {}, {}, {}, {}};
    for (int run = 0; run < runs; ++run) {
      row.seal_us.push_back(micros([&] { return edgesync::SealEnvelope(b.header, b.body, sealed_opts).ok(); }));
      row.seal_signed_us.push_back(
          micros([&] { return edgesync::SealEnvelope(b.header, b.body, signed_opts).ok(); }));
      row.open_us.push_back(micros([&] { return edgesync::OpenEnvelope(*plain, open_opts).ok(); }));
      row.open_verified_us.push_back(micros([&] { return edgesync::OpenEnvelope(*sig, verify_opts).ok(); }));
      std::fprintf(stderr, "bench: %zu events, run %d: seal %.1f / signed %.1f µs, open %.1f / verified %.1f µs\n",
                   events, run + 1, row.seal_us.back(), row.seal_signed_us.back(), row.open_us.back(),
                   row.open_verified_us.back());
    }
    identity.push_back(std::move(row));
  }
  std::vector<double> sign_us, verify_us, agree_us;
  const std::string message(200, 'h');  // about a header
  std::string sig_out;
  if (!signer.Sign(message, &sig_out).ok()) return 1;
  auto agreeing = edgesync::crypto::X25519Private::Generate();
  if (!agreeing.ok()) return 1;
  for (int run = 0; run < runs; ++run) {
    sign_us.push_back(micros([&] {
      std::string out;
      return signer.Sign(message, &out).ok();
    }));
    verify_us.push_back(micros([&] { return pub.Verify(message, sig_out); }));
    agree_us.push_back(micros([&] { return agreeing->Agree(*public_key).ok(); }));
  }

  // The Markdown section.
  std::printf("## Envelope CPU and size (edgesync-bench-envelope)\n\n");
  std::printf("Throughput: MB/s (10^6 bytes/s) of raw batch body on one core, in process, medians "
              "of %d runs; in brackets the ratio to AES-256-GCM alone on the same size in the same "
              "run. Bodies of ~300-byte payment JSON events (mean payload %.0f bytes).\n\n",
              runs, wire[3].payload / static_cast<double>(wire[3].events));
  std::printf("| operation |");
  for (const Batch& b : batches) {
    std::printf(" %zu KiB body (%u events) |", (b.body.size() + 512) >> 10, b.header.event_count);
  }
  std::printf("\n|---|");
  for (size_t s = 0; s < sizes.size(); ++s) std::printf("---|");
  std::printf("\n");
  for (size_t i = 0; i < kOps; ++i) {
    std::printf("| %s |", kNames[i]);
    for (size_t s = 0; s < sizes.size(); ++s) {
      const double mbs = Median(results[i][s]);
      const double base = Median(results[0][s]);
      if (i == 0) {
        std::printf(" %.0f |", mbs);
      } else {
        std::printf(" %.0f (%s) |", mbs, Fixed(mbs / base, 2).c_str());
      }
    }
    std::printf("\n");
  }
  std::printf("\nBytes on the wire per payload byte: encrypted envelope (zstd -3) / sum of the "
              "events' payload sizes, and the compressed body alone / the same sum (the rest is "
              "the header, the 108 bytes of encryption and the CRC). Dictionary: 16 KiB, trained "
              "with TrainDictionary on 2,000 other events of the same kind. Last column: the "
              "envelope at zstd level 19 instead of 3. Two kinds of 300-byte JSON events: the "
              "bench's generator, whose random transaction ids and codes (about 28 bytes of "
              "entropy an event) bound any compressor, and the template the other benches send. "
              "Goals: envelope <= 0.15 at 1,000 events; with a dictionary <= 0.25 at 10 "
              "events.\n\n");
  std::printf("| events | events per batch | payload bytes | envelope / payload | compressed body / "
              "payload | envelope / payload, dictionary | compressed body / payload, dictionary | "
              "envelope / payload, zstd -19 |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Wire& w : wire) {
    if (!w.in_table) continue;
    std::printf("| %s | %zu | %.0f | %s | %s | %s | %s | %s |\n", w.events_kind, w.events, w.payload,
                Fixed(w.envelope / w.payload, 3).c_str(), Fixed(w.body / w.payload, 3).c_str(),
                Fixed(w.dict_envelope / w.payload, 3).c_str(), Fixed(w.dict_body / w.payload, 3).c_str(),
                Fixed(w.level19_envelope / w.payload, 3).c_str());
  }
  std::printf("\nDevice identity (format version 2): µs per call on one core, medians of %d runs, of "
              "encrypted batches (zstd -3, generator events) sealed unsigned (version 1) and signed with "
              "the device's Ed25519 key, and opened without and with the signature checked against an "
              "enrolled key; in brackets signed / unsigned in the same run. A signature adds %zu bytes "
              "to every batch, gap record and fragment.\n\n",
              runs, edgesync::format::kSignatureBlock);
  std::printf("| events per batch | envelope bytes, unsigned / signed | seal µs, unsigned | seal µs, signed | "
              "open µs, unsigned | open µs, verified |\n|---|---|---|---|---|---|\n");
  for (const Identity& r : identity) {
    const double seal = Median(r.seal_us), seal_signed = Median(r.seal_signed_us);
    const double open = Median(r.open_us), open_verified = Median(r.open_verified_us);
    std::printf("| %zu | %zu / %zu | %.1f | %.1f (%s) | %.1f | %.1f (%s) |\n", r.events, r.unsigned_bytes,
                r.signed_bytes, seal, seal_signed, Fixed(seal_signed / seal, 2).c_str(), open, open_verified,
                Fixed(open_verified / open, 2).c_str());
  }
  std::printf("\nThe primitives alone, µs per call: Ed25519 sign %.1f, Ed25519 verify %.1f (a ~200-byte "
              "message: the fixed cost per batch, to which Ed25519 adds two SHA-512 passes over the signed bytes); X25519 agreement %.1f, what HPKE's auth mode "
              "would add to each side instead of a signature.\n",
              Median(sign_us), Median(verify_us), Median(agree_us));
  return 0;
}
