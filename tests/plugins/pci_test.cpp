// The pci plugin on every path of an event, as a hostile device reaches it:
// raw payloads (JSON or not), dead letters, track data, card numbers in the
// topic, property names and the content type, JSON numbers in any spelling,
// escapes, separators, Unicode digits, every card network. Only the plugin's
// interface is used (MakePciPlugin, Process), so the same tests ran against
// the plugin before this policy (they failed there: see the commit).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "plugins/card_scan.h"
#include "plugins/json.h"
#include "plugins/pci.h"

namespace edgesync {
namespace {

std::shared_ptr<const Plugin> Pci(const std::string& extra = "") {
  toml::table root = toml::parse("[plugins.p]\ntype = \"pci\"\n" + extra, std::string("test.toml"));
  Settings s(*root["plugins"]["p"].as_table(), "plugins.p");
  Result<std::shared_ptr<const Plugin>> p = MakePciPlugin(s, "");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

// What leaves the plugin for one event.
struct Out {
  std::string payload, topic, content_type;
  std::vector<std::pair<std::string, std::string>> properties;
};

// The payload as a raw stream (or a dead letter) hands it over.
Out Raw(const std::string& payload, const std::string& topic = "t/x",
        std::vector<std::pair<std::string, std::string>> properties = {}, const std::string& content_type = "") {
  Out o{payload, topic, content_type, std::move(properties)};
  Event e;
  e.topic = o.topic;
  e.topic_text = &o.topic;
  e.content_type = &o.content_type;
  e.raw = &o.payload;
  e.properties = &o.properties;
  EXPECT_EQ(Pci()->Process(e), Action::kKeep);
  EXPECT_EQ(e.topic, o.topic);
  return o;
}

// The payload as a JSON stream hands it over (the agent writes it back).
std::string JsonEvent(const std::string& payload) {
  Json j;
  EXPECT_TRUE(j.Parse(payload).ok()) << payload;
  Event e;
  e.topic = "t/x";
  e.json = &j;
  EXPECT_EQ(Pci()->Process(e), Action::kKeep);
  std::string out;
  j.Serialize(&out);
  return out;
}

bool Has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// A Luhn-valid PAN: `body` with the check digit that makes it one.
std::string WithCheckDigit(const std::string& body) { return body + LuhnCheckDigit(body); }

// ---- Finding 1: sensitive fields on raw streams and dead letters ----

TEST(PciRaw, AJsonPayloadIsTreatedAsJson) {
  const Out o = Raw(R"({"pan":"4111111111111111","cvv":"123","card":{"Track2":"x","pin_block":"0425AB"},)"
                    R"("items":[{"cvc":"999","sku":"A1"}],"amount":1250})");
  Json j;
  ASSERT_TRUE(j.Parse(o.payload).ok()) << o.payload;
  EXPECT_EQ(o.payload, R"({"pan":"411111******1111","card":{},"items":[{"sku":"A1"}],"amount":1250})");
}

TEST(PciRaw, SensitivePairsInTextAreRemoved) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"auth ok cvv=123 amount=10", "auth ok  amount=10"},
      {"auth ok CVV: 123 amount: 10", "auth ok  amount: 10"},
      {"pan=4111111111111111&cvv2=123&exp=1227", "pan=411111******1111&exp=1227"},
      {"a=1&cvv2=123", "a=1"},
      {R"({"amount":10,"cvv":"123",)", R"({"amount":10,)"},              // broken JSON
      {R"({"cvv": 123, "amount":10)", R"({ "amount":10)"},
      {R"(log: {\"cvv\":\"123\",\"a\":1})", R"(log: {\"a\":1})"},          // escaped JSON in text
      {"<txn><CVV2>123</CVV2><amount>10</amount></txn>", "<txn><amount>10</amount></txn>"},
      {R"(<card cvv="123" brand="visa"/>)", R"(<card  brand="visa"/>)"},
      {"card[cvv]=123&card[exp]=1227", "card[exp]=1227"},
      {"card.security_code = 123\nnext", "\nnext"},
      {"pin_block: 0425ABCDEF123456;x", "x"},
      {"track2='4111111111111111=2512101' ok", " ok"},
  };
  for (const Case& c : cases) EXPECT_EQ(Raw(c.in).payload, c.out) << c.in;
}

TEST(PciRaw, DeadLettersOfJsonStreamsToo) {
  // A dead letter: the payload as raw text (even on a JSON stream), the
  // agent's edgesync.* properties added, edgesync.error quoting the payload.
  const Out o = Raw(R"({"type":"refund","cvv":"123","track1":"%B4111111111111111^DOE/J^2512101?")",
                    "terminal/t1/payment/refund",
                    {{"edgesync.reason", "plugin-error"},
                     {"edgesync.error", R"(bad field "cvv":"123" in {"pan":"4111 1111 1111 1111")"}});
  EXPECT_FALSE(Has(o.payload, "123")) << o.payload;
  EXPECT_FALSE(Has(o.payload, "2512101")) << o.payload;
  EXPECT_EQ(o.properties[0].second, "plugin-error");
  EXPECT_FALSE(Has(o.properties[1].second, "123")) << o.properties[1].second;
  EXPECT_TRUE(Has(o.properties[1].second, "4111 11** **** 1111")) << o.properties[1].second;
}

// ---- Finding 2: track data ----

TEST(PciTracks, TrackDataGoesWholeWhereverItIs) {
  const std::string t2 = ";4111111111111111=25121010000012345678?";
  const std::string t2_bare = "4111111111111111=25121010000012345678";
  const std::string t1 = "%B4111111111111111^DOE/JOHN^25121010000000012345678?";
  const std::string t1_bare = "B4111111111111111^DOE/JOHN^2512101000000001234";
  for (const std::string& track : {t2, t2_bare, t1, t1_bare}) {
    // In a JSON value under an innocent name.
    const std::string json = JsonEvent(R"({"data":")" + track + R"(","n":1})");
    EXPECT_EQ(json, R"({"data":"411111******1111","n":1})") << track;
    // In raw text, and in a property value.
    const Out o = Raw("swipe " + track + " done", "t/x", {{"note", "read " + track}});
    EXPECT_EQ(o.payload, "swipe 411111******1111 done") << track;
    EXPECT_EQ(o.properties[0].second, "read 411111******1111") << track;
  }
  // EMV track 2 equivalent (tag 57) in a hex dump: 'D' separator, 'F' pad.
  EXPECT_EQ(Raw("57134111111111111111D25121010000012345F").payload, "5713411111******1111");
  // A PAN masked already, or a sentinel before a number outside the
  // networks' ranges: the data after it goes all the same.
  EXPECT_EQ(Raw("t=411111******1111=2512101000001234").payload, "t=411111******1111");
  EXPECT_EQ(Raw(";1234567890123=2512101000001?").payload, "123456***0123");
}

// ---- Finding 3: card numbers that arrived intact ----

TEST(PciPans, InTheTopicPropertyNamesAndContentType) {
  const Out o = Raw("ok", "terminal/4111111111111111/payment", {{"card 5555 5555 5555 4444", "x"}, {"cvv", "123"}},
                    "application/x-card; pan=4111-1111-1111-1111");
  EXPECT_EQ(o.topic, "terminal/411111******1111/payment");
  ASSERT_EQ(o.properties.size(), 1u);  // a property named cvv goes
  EXPECT_EQ(o.properties[0].first, "card 5555 55** **** 4444");
  EXPECT_EQ(o.content_type, "application/x-card; pan=4111-11**-****-1111");
  // Levels of a topic: '/' joins groups laid out as a card prints them.
  EXPECT_EQ(Raw("ok", "pay/4111/1111/1111/1111/x").topic, "pay/4111/11**/****/1111/x");
}

TEST(PciPans, JsonNumbersInAnySpelling) {
  const std::string pan = "4982965724920861";
  ASSERT_EQ(WithCheckDigit("498296572492086"), pan);
  struct Case {
    const char* in;
    const char* out;  // the masked string
  } cases[] = {{"4.982965724920861e15", "498296******0861"},  {"4.982965724920861E+15", "498296******0861"},
               {"0.4982965724920861e16", "498296******0861"}, {"49829657249208610e-1", "498296******0861"},
               {"4982965724920861e0", "498296******0861e0"},  {"498296572492086.1e1", "498296******0861"},
               {"4982965724920861.0", "498296******0861.0"},  {"4982965724920861.5", "498296******0861.5"}};
  for (const Case& c : cases) {
    const std::string n = c.in, m = c.out;
    EXPECT_EQ(JsonEvent(R"({"n":)" + n + "}"), R"({"n":")" + m + R"("})") << n;
    EXPECT_EQ(JsonEvent(R"({"n":-)" + n + "}"), R"({"n":"-)" + m + R"("})") << n;
    EXPECT_EQ(Raw("[" + n + "]").payload, R"([")" + m + R"("])") << n;           // raw JSON
    EXPECT_EQ(Raw("amount " + n + " EUR").payload, "amount " + m + " EUR") << n;  // text
  }
  // Not an integer that is a PAN: left as it is.
  EXPECT_EQ(JsonEvent(R"({"n":4.982965724920861e14,"m":1.5e300,"k":1e-300})"),
            R"({"n":4.982965724920861e14,"m":1.5e300,"k":1e-300})");
}

TEST(PciPans, JsonEscapesInTextThatIsNotJson) {
  std::string escaped;
  for (char c : std::string("4111111111111111")) escaped += "\\u003" + std::string(1, c);
  // Broken JSON (a raw stream, a dead letter): edgesync-unpack would decode it.
  EXPECT_EQ(Raw(R"({"note":")" + escaped + R"(")").payload, R"({"note":"411111******1111")");
  EXPECT_EQ(Raw("\\u0034\\u0031\\u0031\\u0031 \\u0031\\u0031\\u0031\\u0031 1111\\u00201111").payload,
            "4111 11** **** 1111");
  // Surrogate pairs (mathematical digits), other escapes a decoder knows.
  EXPECT_EQ(Raw("\\ud835\\udfd2111111111111111 x").payload, "411111******1111 x");
  EXPECT_EQ(Raw("%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31").payload, "411111******1111");
  EXPECT_EQ(Raw("&#52;&#x31;11111111111111").payload, "411111******1111");
  // Escaped in a document: unescaped by the parser, then found as always.
  EXPECT_EQ(JsonEvent(R"({"note":")" + escaped + R"("})"), R"({"note":"411111******1111"})");
}

TEST(PciPans, EverySeparator) {
  struct Case {
    const char* sep;
    const char* kept;  // the separator in the mask
  } cases[] = {{".", "."},       {"/", "/"},           {"_", "_"},           {",", ","},
               {"\t", "\t"},     {"\n", "\n"},         {"\r\n", "\r\n"},     {" - ", " - "},
               {"\xC2\xA0", " "},  // NBSP
               {"\xE2\x80\x93", "-"},  // en dash
               {"\xE2\x80\x94", "-"},  // em dash
               {"\xEF\xBC\x8E", "."},  // fullwidth full stop
               {"\xE3\x80\x80", " "},  // ideographic space
               {"\xE2\x80\xAF", " "}};  // narrow no-break space
  for (const Case& c : cases) {
    const std::string s = c.sep, k = c.kept;
    const std::string in = "card 4111" + s + "1111" + s + "1111" + s + "1111 ok";
    EXPECT_EQ(Raw(in).payload, "card 4111" + k + "11**" + k + "****" + k + "1111 ok") << in;
  }
  // Spaces and dashes, one to three of them, need no card layout nor the
  // same separator throughout.
  EXPECT_EQ(Raw("card 4111  1111 1111 1111 ok").payload, "card 4111  11** **** 1111 ok");
  EXPECT_EQ(Raw("card 41 111111  11-1- -11111 ok").payload, "card 41 1111**  **-*- -*1111 ok");
  // Invisible characters are no separators at all: the digits join.
  for (const char* invisible : {"\xE2\x80\x8B", "\xC2\xAD", "\xE2\x80\x8D", "\xE2\x81\xA0", "\xEF\xBB\xBF"}) {
    const std::string in = "4" + std::string(invisible) + "111" + invisible + "1111111111" + invisible + "11";
    EXPECT_EQ(Raw(in).payload, "411111******1111") << in;
  }
}

TEST(PciPans, UnicodeDigitsOfEveryBlock) {
  auto utf8 = [](uint32_t cp) {
    std::string s;
    AppendUtf8(cp, &s);
    return s;
  };
  // Zero of blocks of category Nd: Arabic-Indic, Extended Arabic-Indic,
  // Devanagari, Bengali, Thai, Myanmar, fullwidth, mathematical bold and
  // monospace, Adlam; and superscript (their values are digits too).
  for (uint32_t zero : {0x660u, 0x6F0u, 0x966u, 0x9E6u, 0xE50u, 0x1040u, 0xFF10u, 0x1D7CEu, 0x1D7F6u, 0x1E950u}) {
    std::string in;
    for (char c : std::string("5555555555554444")) in += utf8(zero + static_cast<uint32_t>(c - '0'));
    const Out o = Raw("card " + in + " ok", "t/x", {{"p", in}});
    EXPECT_EQ(o.payload, "card 555555******4444 ok") << std::hex << zero;
    EXPECT_EQ(o.properties[0].second, "555555******4444") << std::hex << zero;
    EXPECT_EQ(JsonEvent(R"({"v":")" + in + R"("})"), R"({"v":"555555******4444"})") << std::hex << zero;
  }
  // Mixed blocks and separators; the mask holds ASCII only.
  const std::string mixed = utf8(0x664) + "111" + utf8(0xA0) + utf8(0xFF11) + "111-" + utf8(0x967) + "111 1111";
  EXPECT_EQ(Raw(mixed).payload, "4111 11**-**** 1111");
}

TEST(PciPans, EveryNetworksRanges) {
  for (const std::string& body : {std::string("12345678901234"),  // UATP, 15
                                  std::string("979212345678901"),  // Troy
                                  std::string("220012345678901"),  // Mir
                                  std::string("508512345678901"),  // RuPay
                                  std::string("810012345678901"),  // UnionPay 81
                                  std::string("622126123456789"),  // UnionPay / Discover
                                  std::string("353012345678901"),  // JCB
                                  std::string("3612345678901"),    // Diners, 14
                                  std::string("271012345678901"),  // Mastercard 2-series
                                  std::string("676770123456789012")}) {  // Maestro, 19
    const std::string pan = WithCheckDigit(body);
    const std::string masked = pan.substr(0, 6) + std::string(pan.size() - 10, '*') + pan.substr(pan.size() - 4);
    EXPECT_EQ(Raw("card " + pan).payload, "card " + masked) << pan;
  }
}

TEST(PciPans, TokensAreTheSameHoweverTheCardIsWritten) {
  const std::string dir = std::filesystem::temp_directory_path() / ("edgesync-pci-t-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/k") << std::string(32, 'k');
  const std::shared_ptr<const Plugin> p = Pci("mode = \"token\"\ntoken_key_file = \"" + dir + "/k\"\n");
  ASSERT_TRUE(p);
  auto token = [&](const std::string& raw) {
    std::string payload = "card " + raw;
    Event e;
    e.raw = &payload;
    p->Process(e);
    return payload.substr(5);
  };
  const std::string t = token("4111111111111111");
  EXPECT_EQ(t.substr(0, 4), "tok_");
  EXPECT_EQ(token("\xD9\xA4\xD9\xA1\xD9\xA1\xD9\xA1 1111 1111 1111"), t);  // Arabic-Indic 4111
  EXPECT_EQ(token("4.111111111111111e15"), t);
  EXPECT_EQ(token(";4111111111111111=2512101000?"), t);
  std::filesystem::remove_all(dir);
}

// A key an earlier plugin took from a field before pci masked the field
// (rules' key_from): it becomes edgesync.key and the Kafka key centrally.
TEST(PciPans, InTheEventsKey) {
  std::string payload = "{}";
  Event e;
  e.raw = &payload;
  e.topic = "t/x";
  e.route.key = "4111111111111111";
  EXPECT_EQ(Pci()->Process(e), Action::kKeep);
  EXPECT_EQ(e.route.key, "411111******1111");
}

// A name that reads as a sensitive one once its own card data is cleaned
// ("cv<cvv>1</cvv>v" is "cvv" without its pair), and names that are paths
// ending in one, go like the name itself.
TEST(PciRaw, NamesThatBecomeOrEndInASensitiveNameGo) {
  EXPECT_EQ(JsonEvent(R"({"cv<cvv>1</cvv>v":"123","ok":1})"), R"({"ok":1})");
  EXPECT_EQ(JsonEvent(R"({"card.cvv":"123","card[cvv]":"456","ok":1})"), R"({"ok":1})");
  Out o = Raw("x", "t/x", {{"cv<cvv>1</cvv>v", "123"}, {"payment[cvv]", "456"}, {"note", "kept"}});
  ASSERT_EQ(o.properties.size(), 1u);
  EXPECT_EQ(o.properties[0].first, "note");
}

// more_sensitive_fields adds to the defaults; sensitive_fields replaces them.
TEST(PciRaw, MoreSensitiveFieldsAddToTheDefaults) {
  auto run = [](const std::string& settings) {
    std::string payload = R"({"cvv":"123","emv_tags":"9F26","note":"x"})";
    Event e;
    e.raw = &payload;
    e.topic = "t/x";
    EXPECT_EQ(Pci(settings)->Process(e), Action::kKeep);
    return payload;
  };
  EXPECT_EQ(run("more_sensitive_fields = [\"emv_tags\"]\n"), R"({"note":"x"})");
  EXPECT_EQ(run("sensitive_fields = [\"emv_tags\"]\n"), R"({"cvv":"123","note":"x"})");
}

// ---- Finding 4: what is not a card number stays ----

TEST(PciPolicy, LeavesImeisBarcodesTimestampsAndReadings) {
  for (const char* text : {
           "imei 356938035643809",                   // IMEI, TAC 35 (Luhn-valid by design)
           "imei 86-123456-789012-3",                // IMEI in groups
           "iccid 89490200001234567897",             // SIM ICCID (Luhn-valid)
           "ean 4006381333924",                      // EAN-13 in the Visa range, Luhn-valid too
           "ts 1795000000129 1795000000000122",      // ms and µs timestamps
           "+49 170 1234567",                        // a phone number
           "t,1013,1015,1017,1020,1019,1016,1018",   // CSV of 4-digit readings
           "lat 52.520006599999994 lon 13.404954",   // a float's fraction
           "10.0.0.1 192.168.100.200 2026-11-22T10:00:00Z v1.2.3.4",
       }) {
    EXPECT_EQ(Raw(text).payload, text) << text;
  }
}

}  // namespace
}  // namespace edgesync
