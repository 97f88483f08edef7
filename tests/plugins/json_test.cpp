#include "plugins/json.h"

#include <gtest/gtest.h>

namespace edgesync {
namespace {

std::string Out(const Json& j) {
  std::string s;
  j.Serialize(&s);
  return s;
}

TEST(Json, UntouchedDocumentIsWrittenBackByteForByte) {
  Json j;
  const std::string text = R"( {"a" : 10.50, "b":[1e3, -0.0, true ,null], "c":"x\u00e9\n\"q\""}  )";
  ASSERT_TRUE(j.Parse(text).ok());
  EXPECT_FALSE(j.dirty());
  EXPECT_EQ(Out(j), text);
}

TEST(Json, AnEditKeepsEveryOtherValueAsWritten) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"amount":10.50,"big":123456789012345678901234,"s":"a\/b","drop":1})").ok());
  j.Remove(j.Find(j.root(), "drop"));
  EXPECT_TRUE(j.dirty());
  EXPECT_EQ(Out(j), R"({"amount":10.50,"big":123456789012345678901234,"s":"a\/b"})");
}

TEST(Json, ReadsScalarsAndPaths) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"card":{"pan":"4111","n":42.5},"items":[{"sku":"x\"y"}],"ok":true})").ok());
  std::string scratch;
  EXPECT_EQ(j.str(j.FindPath("card.pan"), &scratch), "4111");
  EXPECT_EQ(j.number(j.FindPath("card.n")).value(), 42.5);
  EXPECT_EQ(j.str(j.FindPath("items.0.sku"), &scratch), "x\"y");
  EXPECT_TRUE(j.has_escapes(j.FindPath("items.0.sku")));
  EXPECT_TRUE(j.boolean(j.FindPath("ok")));
  EXPECT_EQ(j.FindPath("items.1.sku"), Json::kNone);
  EXPECT_EQ(j.FindPath("card.pan.x"), Json::kNone);
  EXPECT_EQ(j.FindPath("nope"), Json::kNone);
  EXPECT_EQ(j.size(j.root()), 3u);
}

TEST(Json, UnescapesUnicodeAndSurrogatePairs) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"k\u00e9y":"\u20ac \ud83d\ude00 \t"})").ok());
  std::string s1, s2;
  Json::Ref m = j.first(j.root());
  EXPECT_EQ(j.key(m, &s1), "k\xc3\xa9y");
  EXPECT_EQ(j.str(m, &s2), "\xe2\x82\xac \xf0\x9f\x98\x80 \t");
  EXPECT_EQ(j.Find(j.root(), "k\xc3\xa9y"), m);
  // Lone surrogates (valid JSON, no UTF-8 form) become U+FFFD.
  ASSERT_TRUE(j.Parse(R"(["\udc1a1","\ud800","\ud800\u0041"])").ok());
  Json::Ref a = j.first(j.root());
  EXPECT_EQ(j.str(a, &s1), "\xef\xbf\xbd" "1");
  EXPECT_EQ(j.str(j.next(a), &s1), "\xef\xbf\xbd");
  EXPECT_EQ(j.str(j.next(j.next(a)), &s1), "\xef\xbf\xbd" "A");
}

TEST(Json, BuildsAndEditsDocuments) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"a":1,"b":2,"a":3})").ok());
  j.Put(j.root(), "a", j.NewString("line\n\"two\""));  // replaces the first, drops the later duplicate
  j.Rename(j.Find(j.root(), "b"), "be");
  Json::Ref arr = j.NewArray();
  j.Append(arr, j.NewNumber(1.25));
  j.Append(arr, j.NewBool(false));
  j.Append(arr, j.NewNull());
  j.Append(arr, j.NewNumber(1.0 / 0.0));  // no infinity in JSON
  j.Append(j.root(), arr, "list");
  j.ReplaceWithString(j.Find(j.root(), "be"), "masked");
  EXPECT_EQ(Out(j), R"({"a":"line\n\"two\"","be":"masked","list":[1.25,false,null,null]})");
  // Moving a subtree under a new root.
  Json::Ref o = j.NewObject();
  j.Append(o, j.Find(j.root(), "list"), "moved");
  j.SetRoot(o);
  EXPECT_EQ(Out(j), R"({"moved":[1.25,false,null,null]})");
}

TEST(Json, UnchangedContainersKeepTheirTextAfterOtherEdits) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({ "keep" : { "a" : [1, 2.50] }, "edit" : { "b" : 1 , "c" : 2 }, "move" : [ 3 ] })").ok());
  j.Remove(j.FindPath("edit.c"));
  Json::Ref o = j.NewObject();
  j.Append(o, j.Find(j.root(), "move"), "moved");
  j.Append(j.root(), o, "wrapper");
  EXPECT_EQ(Out(j), R"({"keep":{ "a" : [1, 2.50] },"edit":{"b":1},"wrapper":{"moved":[ 3 ]}})");
  j.Rename(j.FindPath("keep.a"), "z");
  j.ReplaceWithString(j.FindPath("wrapper.moved.0"), "x");
  EXPECT_EQ(Out(j), R"({"keep":{"z":[1, 2.50]},"edit":{"b":1},"wrapper":{"moved":["x"]}})");
}

TEST(Json, NameSignatureHasABitForEveryNameAsParsed) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"Card":{"CVV":"1"},"items":[{"pin":2}]})").ok());
  for (const char* name : {"card", "cvv", "CVV", "items", "pin"}) {
    EXPECT_NE(j.name_signature() & Json::NameBit(name), 0u) << name;
  }
  ASSERT_TRUE(j.Parse(R"({"a":1})").ok());
  EXPECT_EQ(j.name_signature(), Json::NameBit("a"));
  ASSERT_TRUE(j.Parse(R"({"c\u0076v":1})").ok());
  EXPECT_EQ(j.name_signature(), ~0ull);  // escaped: anything may be there
}

TEST(Json, ParseReusesTheDocument) {
  Json j;
  ASSERT_TRUE(j.Parse(R"({"a":"first"})").ok());
  j.Put(j.root(), "b", j.NewString("added"));
  ASSERT_TRUE(j.Parse(R"(["second"])").ok());
  EXPECT_FALSE(j.dirty());
  EXPECT_EQ(Out(j), R"(["second"])");
  std::string s;
  EXPECT_EQ(j.str(j.first(j.root()), &s), "second");
}

TEST(Json, ScalarDocuments) {
  Json j;
  ASSERT_TRUE(j.Parse("\"just a string\"").ok());
  EXPECT_TRUE(j.IsString(j.root()));
  ASSERT_TRUE(j.Parse("42").ok());
  EXPECT_EQ(j.number(j.root()).value(), 42);
}

TEST(Json, RefusesInvalidDocuments) {
  Json j;
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "{\"a\":1}x", "nul", "{\"a\":\"\\q\"}", "[01]",
                          "{\"a\":tru}", "\"\xff\"", "{'a':1}", "[1 2]", "-", "{\"a\" 1}"}) {
    EXPECT_FALSE(j.Parse(bad).ok()) << bad;
  }
  std::string deep(Json::kMaxDepth + 2, '[');
  deep += std::string(Json::kMaxDepth + 2, ']');
  Status st = j.Parse(deep);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("deeper"), std::string::npos) << st.message();
  std::string ok_deep(Json::kMaxDepth, '[');
  ok_deep += std::string(Json::kMaxDepth, ']');
  EXPECT_TRUE(j.Parse(ok_deep).ok());
}

}  // namespace
}  // namespace edgesync
