// The card data scanner (plugins/card_scan.h) on its own: the policy's
// rules one by one, its bounds on hostile text, and its helpers.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>

#include "plugins/card_scan.h"

namespace edgesync {
namespace {

std::string Mask(const std::string& text, const PanPolicy& policy = {}) {
  std::string out;
  return MaskPans(text, policy, MaskLayout, &out) ? out : text;
}

std::string Fix(std::string pan) {  // the last digit made the Luhn check digit
  pan.back() = LuhnCheckDigit(std::string_view(pan).substr(0, pan.size() - 1));
  return pan;
}

TEST(CardScan, IssuerTableByLength) {
  using I = PanPolicy::Issuers;
  EXPECT_TRUE(IssuerAccepts(Fix("100000000000000"), I::kTable));    // UATP 15
  EXPECT_FALSE(IssuerAccepts(Fix("1000000000000000"), I::kTable));  // 16 digits from 1: a µs timestamp
  EXPECT_TRUE(IssuerAccepts(Fix("4000000000000"), I::kTable));      // Visa 13, 16, 19
  EXPECT_FALSE(IssuerAccepts(Fix("400000000000000"), I::kTable));   // Visa 15: an IMEI's length
  EXPECT_TRUE(IssuerAccepts(Fix("370000000000000"), I::kTable));    // Amex 15
  EXPECT_FALSE(IssuerAccepts(Fix("350000000000000"), I::kTable));   // 35 at 15: an IMEI (JCB is 16-19)
  EXPECT_TRUE(IssuerAccepts(Fix("3528000000000000"), I::kTable));   // JCB
  EXPECT_FALSE(IssuerAccepts(Fix("8900000000000000000"), I::kTable));  // an ICCID
  EXPECT_TRUE(IssuerAccepts(Fix("8100000000000000"), I::kTable));      // UnionPay 81
  EXPECT_TRUE(IssuerAccepts(Fix("9792000000000000"), I::kTable));      // Troy
  EXPECT_FALSE(IssuerAccepts(Fix("9791000000000000"), I::kTable));
  EXPECT_TRUE(IssuerAccepts(Fix("2204000000000000"), I::kTable));   // Mir
  EXPECT_TRUE(IssuerAccepts(Fix("2720990000000000"), I::kTable));   // Mastercard 2-series
  EXPECT_FALSE(IssuerAccepts(Fix("2721000000000000"), I::kTable));
  EXPECT_FALSE(IssuerAccepts(Fix("5500000000000"), I::kTable));     // 13 digits from 5
  EXPECT_TRUE(IssuerAccepts(Fix("1000000000000"), I::kAny));
  EXPECT_FALSE(IssuerAccepts(Fix("1000000000000000"), I::kTwoToSix));
}

TEST(CardScan, SeparatorsOtherThanSpacesAndDashesNeedACardLayout) {
  EXPECT_EQ(Mask("4111.1111.1111.1111"), "4111.11**.****.1111");
  EXPECT_EQ(Mask("3782/822463/10005"), "3782/82****/*0005");   // Amex 4-6-5
  EXPECT_EQ(Mask("4111111111.111111"), "4111111111.111111");   // 10-6: no card prints that
  EXPECT_EQ(Mask("4111 111111 111111"), "4111 11**** **1111");  // spaces: any groups
  EXPECT_EQ(Mask("4111.1111,1111.1111"), "4111.1111,1111.1111");  // one separator throughout
  // A laid-out span must be its whole run: a list of 4-digit readings is
  // not a card, whatever four of them in a row add up to.
  EXPECT_EQ(Mask("4111,1111,1111,1111,1227"), "4111,1111,1111,1111,1227");
  EXPECT_EQ(Mask("4111,1111,1111,1111 1227"), "4111,11**,****,1111 1227");
  PanPolicy any_run;
  any_run.layout_whole_run = false;
  EXPECT_EQ(Mask("4111,1111,1111,1111,1227", any_run), "4111,11**,****,1111,1227");
}

TEST(CardScan, ContextSaysWhatIsNoCard) {
  EXPECT_EQ(Mask("4006381333924"), "4006381333924");  // an EAN-13 in the Visa range, Luhn-valid too
  EXPECT_EQ(Mask("4222222222222"), "422222***2222");  // a Visa 13 that is no EAN
  EXPECT_EQ(Mask("+4917012345678"), "+4917012345678");    // a phone number
  EXPECT_EQ(Mask("+4111111111111111"), "+411111******1111");  // 16 digits: no phone number
  EXPECT_EQ(Mask("0.4111111111111111"), "0.4111111111111111");  // a float's fraction
  EXPECT_EQ(Mask("4111111111111111.25"), "411111******1111.25");
  PanPolicy no_context;
  no_context.context = false;
  EXPECT_EQ(Mask("4006381333924", no_context), "400638***3924");
  EXPECT_EQ(Mask("0.4111111111111111", no_context), "0.411111******1111");
}

TEST(CardScan, LongerRuns) {
  // A PAN glued to other digits is not looked for (bench: ns timestamps,
  // ICCIDs and long ids would be masked), except right before track data
  // and after an EMV tag.
  EXPECT_EQ(Mask("41111111111111111227"), "41111111111111111227");
  PanPolicy ends;
  ends.inside_longer_runs = PanPolicy::Inside::kEnds;
  EXPECT_EQ(Mask("41111111111111111227", ends), "411111******11111227");
  EXPECT_EQ(Mask("5A0841111111111111115F2403"), "5A08411111******11115F2403");
  EXPECT_EQ(Mask("9F1A0208405A0841111111111111115F24"), "9F1A0208405A08411111******11115F24");
}

TEST(CardScan, TracksNeedTheirShape) {
  EXPECT_EQ(Mask("4111111111111111=12"), "411111******1111=12");  // no expiry and service code
  EXPECT_EQ(Mask("4111111111111111^NAME"), "411111******1111^NAME");
  EXPECT_EQ(Mask("4111111111111111^A NAME LONGER THAN TWENTY SIX^2512"), "411111******1111^A NAME LONGER THAN TWENTY SIX^2512");
  EXPECT_EQ(Mask("1234567890123=2512101"), "1234567890123=2512101");  // no sentinel, no PAN
  EXPECT_EQ(Mask("x;4111111111111111=2512101?y"), "x411111******1111y");
  // After a PAN masked already, however it ends (found by fuzzing).
  EXPECT_EQ(Mask("411111**********=2512101000001234"), "411111**********");
  EXPECT_EQ(Mask("x ;411111111111111*=2512101000001234 y"), "x 411111******111* y");
}

TEST(CardScan, ExponentFormsAndTheDigitsAsWritten) {
  EXPECT_EQ(Mask("x 4.982965724920861e15 y"), "x 498296******0861 y");   // the integer it spells
  EXPECT_EQ(Mask("x -0.4982965724920861E+16"), "x -498296******0861");
  // Spells no PAN, shows one (found by fuzzing): the digits as written.
  EXPECT_EQ(Mask("x 4982965724920861e15"), "x 498296******0861e15");
  EXPECT_EQ(Mask("x 4.982965724920861e14"), "x 4.982965724920861e14");
  // A number is a token on its own: after other groups too, not inside a
  // hex id.
  EXPECT_EQ(Mask("4111111111111111 4.2e15"), "411111******1111 420000******0000");
  EXPECT_EQ(Mask("1 4.2e15"), "1 420000******0000");
  EXPECT_EQ(Mask("id ab4.2e15c"), "id ab4.2e15c");
}

TEST(CardScan, EscapesReadBothWays) {
  // "%41" decodes to 'A': a reader sees '%' and the digits (found by fuzzing).
  EXPECT_EQ(Mask("B%4111111111111111^DOE/J^2512101?"), "B411111******1111");
  // "%34" then 13 ones: a URL decoder sees 4 and 13 ones (no PAN), a reader
  // sees 34 and 13 ones, an Amex number: both readings are masked.
  const std::string amex = Fix("341111111111111");
  const std::string escaped = "%34" + amex.substr(2);
  EXPECT_EQ(Mask("x " + escaped), "x %341111*****" + amex.substr(11)) << escaped;
  EXPECT_TRUE(HasPan("x " + escaped));
  // "%11" is a control character to a URL decoder: read as written too.
  const std::string uatp = Fix("111111110555555");
  EXPECT_EQ(Mask("a%" + uatp + "%b"), "a%111111*****" + uatp.substr(11) + "%b");
  // Each family alone (found by fuzzing): to a JSON decoder "%11" stays,
  // and the \u escapes after it join its digits into a UATP number.
  std::string mixed = "%" + uatp.substr(0, 11);
  for (char c : uatp.substr(11)) mixed += std::string("\\u003") + c;
  EXPECT_EQ(Mask(mixed), "%111111*****" + uatp.substr(11)) << mixed;
}

TEST(CardScan, ExpandExponent) {
  std::string out;
  ASSERT_TRUE(ExpandExponent("4.982965724920861e15", &out));
  EXPECT_EQ(out, "4982965724920861");
  ASSERT_TRUE(ExpandExponent("-0.00498e+4", &out));
  EXPECT_EQ(out, "-49.8");
  ASSERT_TRUE(ExpandExponent("12E1", &out));
  EXPECT_EQ(out, "120");
  EXPECT_FALSE(ExpandExponent("1.5", &out));       // no exponent
  EXPECT_FALSE(ExpandExponent("1e-3", &out));      // below 1
  EXPECT_FALSE(ExpandExponent("1e41", &out));      // more than 40 digits
  EXPECT_FALSE(ExpandExponent("0e5", &out));
  EXPECT_FALSE(ExpandExponent("1e99999999999999999999", &out));
}

TEST(CardScan, MasksHoldNoDigitsButTheKeptOnes) {
  EXPECT_EQ(MaskLayout("4111111111111111", "4111 1111 1111 1111"), "4111 11** **** 1111");
  EXPECT_EQ(MaskLayout("123456789012", "123456789012"), "********9012");  // short: last four only
}

TEST(CardScan, SensitivePairsRemovedUntilNoneIsLeft) {
  auto sensitive = [](std::string_view n) { return n == "cvv" || n == "CVV"; };
  std::string out;
  // Removing the element joins "cv" and "v=2" into a new pair.
  ASSERT_TRUE(RemoveSensitivePairs("cv<cvv>1</cvv>v=2 ok", sensitive, &out));
  EXPECT_EQ(out, " ok");
  // Nested deeper than the rescans: overwritten, never left readable.
  std::string nested = "=1";
  for (int i = 0; i < 20; ++i) nested = "cv<cvv>1</cvv>v" + nested;
  ASSERT_TRUE(RemoveSensitivePairs(nested, sensitive, &out));
  EXPECT_FALSE(RemoveSensitivePairs(out, sensitive, nullptr)) << out;
  EXPECT_FALSE(RemoveSensitivePairs("the cvv field, cvv_len=3, mycvv=1", sensitive, nullptr));
  // A name after '<' that is no element is read as a pair (found by fuzzing).
  ASSERT_TRUE(RemoveSensitivePairs("x <cvv=2 y", sensitive, &out));
  EXPECT_EQ(out, "x < y");
}

// The shortcut for plain ASCII text (only spans where a PAN can start are
// read) agrees with the full scan, which a trailing backslash forces (it
// makes the text not plain, and is no escape): random texts of digits,
// separators, mask and track characters, letters and whole PANs.
TEST(CardScan, ThePlainTextShortcutAgreesWithTheFullScan) {
  std::mt19937_64 rng(5);
  const std::string alphabet = "0123456789012345678901234567890123456789 -.,/_:;|'\t\n*xX#=D^?eE+B;aZ\"{}";
  const std::string pieces[] = {"4111111111111111", "5555555555554444", "4.2e15", "4982965724920861e0",
                                "3782 822463 10005", "4111.1111.1111.1111"};
  int positives = 0;
  for (int t = 0; t < 20000; ++t) {
    std::string s;
    const int len = static_cast<int>(rng() % 150);
    for (int k = 0; k < len; ++k) {
      if (rng() % 40 == 0) {
        s += pieces[rng() % std::size(pieces)];
      } else {
        s += alphabet[rng() % alphabet.size()];
      }
    }
    const bool plain = HasPan(s);
    positives += plain;
    ASSERT_EQ(plain, HasPan(s + "\\")) << s;
  }
  EXPECT_GT(positives, 1000);
}

// Hostile text: 256 KiB built to make the scanner slow. Linear work keeps
// each well under a second (the bench has the figures); no PAN is left.
TEST(CardScan, HostileTextStaysLinearAndLeavesNoPan) {
  auto repeat = [](const std::string& unit) {
    std::string s;
    while (s.size() < 256 * 1024) s += unit;
    return s;
  };
  for (const std::string& text : {repeat("1 "), repeat("4111."), repeat("4"), repeat("\\u0034\\u0031 "),
                                   repeat("4111111111111111 "), repeat("1234567890123="), repeat("4.1e15 "),
                                   repeat("\xD9\xA4\xC2\xA0"), repeat("%34%31"), repeat("&#52;")}) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string masked = Mask(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 10.0) << text.substr(0, 16);
    EXPECT_FALSE(HasPan(masked)) << text.substr(0, 16);
  }
}

}  // namespace
}  // namespace edgesync
