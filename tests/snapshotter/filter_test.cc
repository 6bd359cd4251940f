#include "ocix/snapshotter/filter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace ocix::snapshotter {
namespace {

std::string Join(std::span<const std::string> path, size_t from) {
  std::string out;
  for (size_t i = from; i < path.size(); ++i) {
    if (i > from) out += '.';
    out += path[i];
  }
  return out;
}

// A snapshot as containerd's metadata/adaptors.go adaptSnapshot sees it:
// kind, name and parent always present; labels.<rest> looks up the rest of
// the path joined with "." (so a key with dots matches either way).
struct Snapshot {
  std::string name;
  std::string kind;
  std::string parent;
  std::map<std::string, std::string> labels;

  Filter::Adaptor Adaptor() const {
    return [this](std::span<const std::string> path) -> std::optional<std::string> {
      if (path.empty()) return std::nullopt;
      if (path[0] == "kind") return kind;
      if (path[0] == "name") return name;
      if (path[0] == "parent") return parent;
      if (path[0] == "labels") {
        auto it = labels.find(Join(path, 1));
        if (it != labels.end()) return it->second;
      }
      return std::nullopt;
    };
  }
};

Filter MustParse(std::vector<std::string> filters) {
  auto f = Filter::Parse(filters);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(f).value() : Filter();
}

bool Matches(const std::vector<std::string>& filters, const Snapshot& s) {
  return MustParse(filters).Match(s.Adaptor());
}

// The single adaptor answers `path` (joined) with `value`, nothing else.
Filter::Adaptor One(std::string path, std::string value) {
  return [=](std::span<const std::string> p) -> std::optional<std::string> {
    if (Join(p, 0) == path) return value;
    return std::nullopt;
  };
}

// The parsed field path, seen through an adaptor that records it.
std::vector<std::string> FieldPath(const std::string& filter) {
  std::vector<std::string> seen;
  MustParse({filter}).Match([&](std::span<const std::string> p) -> std::optional<std::string> {
    seen.assign(p.begin(), p.end());
    return std::nullopt;
  });
  return seen;
}

// The canonical form of one filter string (shows the decoded value).
std::string CanonicalOf(const std::string& filter) {
  auto canonical = MustParse({filter}).Canonical();
  EXPECT_EQ(canonical.size(), 1u);
  return canonical.empty() ? "" : canonical[0];
}

void ExpectInvalid(const std::vector<std::string>& filters, const std::string& message_part = "") {
  auto f = Filter::Parse(filters);
  ASSERT_FALSE(f.ok()) << "accepted: " << (filters.empty() ? "" : filters[0]);
  EXPECT_EQ(f.status().code(), core::Code::kInvalidArgument);
  if (!message_part.empty()) {
    EXPECT_NE(f.status().message().find(message_part), std::string::npos) << f.status().message();
  }
}

// containerd's snapshots/testsuite checkWalk: its snapshots and its filters,
// with the names each filter must select.
TEST(Filter, ContainerdSnapshotTestsuiteWalk) {
  const std::map<std::string, std::string> root = {{"containerd.io/gc.root", "check-walk"}};
  auto with = [&](std::string l) {
    auto labels = root;
    labels["l"] = std::move(l);
    return labels;
  };
  const std::vector<Snapshot> snapshots = {
      {"a-np", "active", "", root},         {"p", "committed", "", root},
      {"a", "active", "p", root},           {"v", "view", "p", root},
      {"p-wl", "committed", "", with("1")}, {"a-wl", "active", "p-wl", with("2")},
      {"v-wl", "view", "p-wl", with("3")},  {"a-np-wl", "active", "", with("2")},
  };
  struct Case {
    std::vector<std::string> filters;
    std::vector<std::string> matches;
  };
  const std::vector<Case> cases = {
      {{R"(labels."containerd.io/gc.root"==check-walk)"}, {"a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"}},
      {{R"(kind==active,labels."containerd.io/gc.root"==check-walk)"}, {"a-np", "a", "a-wl", "a-np-wl"}},
      {{R"(kind==view,labels."containerd.io/gc.root"==check-walk)"}, {"v", "v-wl"}},
      {{R"(kind==committed,labels."containerd.io/gc.root"==check-walk)"}, {"p", "p-wl"}},
      {{"name==p", "name==a-np-wl"}, {"p", "a-np-wl"}},
      {{"name==a-wl,labels.l"}, {"a-wl"}},
      {{"parent==p"}, {"a", "v"}},
      {{R"(parent!="",labels."containerd.io/gc.root"==check-walk)"}, {"a", "v", "a-wl", "v-wl"}},
      {{"labels.l"}, {"p-wl", "a-wl", "v-wl", "a-np-wl"}},
      {{"labels.l==2"}, {"a-wl", "a-np-wl"}},
  };
  for (const auto& c : cases) {
    Filter f = MustParse(c.filters);
    std::vector<std::string> got;
    for (const auto& s : snapshots)
      if (f.Match(s.Adaptor())) got.push_back(s.name);
    std::vector<std::string> want = c.matches;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << c.filters[0];
  }
}

// containerd's filters/filter_test.go TestFilters, on its corpus.
TEST(Filter, ContainerdFiltersCorpus) {
  struct Entry {
    std::string name, other;
    std::map<std::string, std::string> labels;
  };
  const std::vector<Entry> corpus = {
      {"foo", "", {{"foo", "true"}}},
      {"bar", "", {}},
      {"foo", "", {{"foo", "present"}, {"more complex label", "present"}}},
      {"bar", "", {{"bar", "true"}}},
      {"fooer", "", {{"more complex label with \\ and \"", "present"}}},
      {"fooer", "", {{"more complex label with \\ and \".post", "present"}}},
      {"baz", "too complex, yo", {}},
      {"bazo", "abc", {}},
      {"compound", "", {{"foo", "omg_asdf.asdf-qwer"}}},
  };
  // Unlike adaptSnapshot, this adaptor calls an empty name or other absent.
  auto adapt = [](const Entry& e) -> Filter::Adaptor {
    return [&e](std::span<const std::string> p) -> std::optional<std::string> {
      if (p[0] == "name") return e.name.empty() ? std::nullopt : std::optional(e.name);
      if (p[0] == "other") return e.other.empty() ? std::nullopt : std::optional(e.other);
      if (p[0] == "labels") {
        auto it = e.labels.find(Join(p, 1));
        if (it != e.labels.end()) return it->second;
      }
      return std::nullopt;
    };
  };
  struct Case {
    std::string input;
    std::vector<size_t> expected;
  };
  const std::vector<Case> cases = {
      {"", {0, 1, 2, 3, 4, 5, 6, 7, 8}},
      {"name", {0, 1, 2, 3, 4, 5, 6, 7, 8}},
      {"labels.foo", {0, 2, 8}},
      {"labels.foo,name", {0, 2, 8}},
      {"labels.foo==true", {0}},
      {"labels.foo==omg_asdf.asdf-qwer", {8}},
      {"name==bar", {1, 3}},
      {"name!=bar", {0, 2, 4, 5, 6, 7, 8}},
      {"name==bar,labels.bar", {3}},
      {"other==\"too complex, yo\"", {6}},
      {"other~=[abc]+,name!=foo", {6, 7}},
      {"other~=/[abc]+/,name!=foo", {6, 7}},
      {"other~=/[abc]{1,2}/,name!=foo", {6, 7}},
      {"other~=/[abc]{0,1}\"\\//,name!=foo", {}},
      {"name==bar,labels.bar==true", {3}},
      {"name==bar,labels.bar==wrong", {}},
      {R"(name==foo,labels."more complex label")", {2}},
      {R"(labels."more complex label with \\ and \""==present)", {4}},
      {R"(labels."more complex label with \\ and \"".post==present)", {5}},
  };
  for (const auto& c : cases) {
    Filter f = MustParse({c.input});
    std::vector<size_t> got;
    for (size_t i = 0; i < corpus.size(); ++i)
      if (f.Match(adapt(corpus[i]))) got.push_back(i);
    EXPECT_EQ(got, c.expected) << c.input;
  }

  // Its error cases, with containerd's messages.
  ExpectInvalid({"labels.|foo|==omg_asdf.asdf-qwer"},
                "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered");
  ExpectInvalid({R"(labels.?"more complex label with \\ and \"".post==present)"},
                R"(filters: parse error: [labels. >|?|< "more complex label with \\ and \"".post==present]: )"
                "expected field or quoted");
  ExpectInvalid({"name==foo,"}, "filters: parse error: [name==foo,]: expected field or quoted");
  ExpectInvalid({"labels."}, "filters: parse error: [labels.]: expected field or quoted");
  ExpectInvalid({"image~=,id?=?fbaq"}, "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted");
  ExpectInvalid({"labels.ns/key==value"},
                "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated");
  ExpectInvalid({"labels.key==/value"},
                "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated");
}

TEST(Filter, EmptyMatchesEverything) {
  Snapshot s{"x", "active", "", {}};
  EXPECT_TRUE(Matches({}, s));
  EXPECT_TRUE(Matches({""}, s));
  // One empty alternative makes the whole list match.
  EXPECT_TRUE(Matches({"name==nope", ""}, s));
  EXPECT_TRUE(Filter().Match(s.Adaptor()));
  // Whitespace is not empty: a field is expected.
  ExpectInvalid({" "}, "expected field or quoted");
}

TEST(Filter, Operators) {
  Snapshot s{"n", "committed", "p", {{"a", "1"}, {"empty", ""}}};
  EXPECT_TRUE(Matches({"name==n"}, s));
  EXPECT_FALSE(Matches({"name==m"}, s));
  EXPECT_TRUE(Matches({"name!=m"}, s));
  EXPECT_FALSE(Matches({"name!=n"}, s));
  EXPECT_TRUE(Matches({"kind~=^comm"}, s));
  EXPECT_FALSE(Matches({"kind~=^act"}, s));
  // ~= searches (RE2's MatchString is unanchored too).
  EXPECT_TRUE(Matches({"kind~=mit"}, s));
  EXPECT_FALSE(Matches({"kind~=^mit$"}, s));

  // Presence: a label with an empty value is present.
  EXPECT_TRUE(Matches({"labels.a"}, s));
  EXPECT_TRUE(Matches({"labels.empty"}, s));
  EXPECT_FALSE(Matches({"labels.b"}, s));
  EXPECT_FALSE(Matches({"nosuchfield"}, s));

  // Absent fields: == is false, != and ~= compare against "".
  EXPECT_FALSE(Matches({R"(labels.b=="")"}, s));
  EXPECT_TRUE(Matches({R"(labels.empty=="")"}, s));
  EXPECT_TRUE(Matches({"labels.b!=x"}, s));
  EXPECT_FALSE(Matches({R"(labels.b!="")"}, s));
  EXPECT_TRUE(Matches({"labels.b~=/^$/"}, s));
  EXPECT_FALSE(Matches({"labels.b~=x"}, s));
}

TEST(Filter, AndOr) {
  Snapshot s{"n", "active", "p", {{"l", "2"}}};
  EXPECT_TRUE(Matches({"name==n,kind==active,labels.l==2"}, s));
  EXPECT_FALSE(Matches({"name==n,kind==active,labels.l==3"}, s));
  EXPECT_TRUE(Matches({"name==x", "kind==active"}, s));
  EXPECT_TRUE(Matches({"name==n,labels.l==3", "parent==p"}, s));
  EXPECT_FALSE(Matches({"name==x", "kind==view", "labels.l==3"}, s));
}

TEST(Filter, LabelKeysWithDotsAndSlashes) {
  Snapshot s{"n", "active", "", {{"containerd.io/gc.ref.snapshot.overlayfs", "sha256:1"}, {"a.b", "dotted"}}};
  EXPECT_EQ(FieldPath(R"(labels."containerd.io/gc.ref.snapshot.overlayfs")"),
            (std::vector<std::string>{"labels", "containerd.io/gc.ref.snapshot.overlayfs"}));
  EXPECT_TRUE(Matches({R"(labels."containerd.io/gc.ref.snapshot.overlayfs"==sha256:1)"}, s));
  // Unquoted dots split the path; adaptSnapshot joins the rest back.
  EXPECT_EQ(FieldPath("labels.a.b"), (std::vector<std::string>{"labels", "a", "b"}));
  EXPECT_TRUE(Matches({"labels.a.b==dotted"}, s));
  EXPECT_TRUE(Matches({R"(labels."a"."b"==dotted)"}, s));
  EXPECT_TRUE(Matches({R"(labels."containerd.io/gc"."ref.snapshot.overlayfs")"}, s));
  // A slash unquoted starts a /quoted/ token, which a field may not be.
  ExpectInvalid({"labels.containerd.io/gc.root"});
  ExpectInvalid({"labels./a/"}, "invalid quote encountered");
  // Fields are [A-Za-z0-9_]: a hyphen needs quotes.
  ExpectInvalid({"labels.my-key"});
  EXPECT_EQ(FieldPath(R"(labels."my-key")"), (std::vector<std::string>{"labels", "my-key"}));
  EXPECT_EQ(FieldPath("_9.0a"), (std::vector<std::string>{"_9", "0a"}));
  EXPECT_EQ(FieldPath(R"(labels."")"), (std::vector<std::string>{"labels", ""}));
}

TEST(Filter, UnquotedValues) {
  // A value runs to "," or whitespace and may hold '.', '=', '/', quotes.
  EXPECT_TRUE(MustParse({"f==a.b/c=d\"e|f~g!h"}).Match(One("f", "a.b/c=d\"e|f~g!h")));
  EXPECT_TRUE(MustParse({"f==sha256:0123,g"}).Match([](std::span<const std::string> p) -> std::optional<std::string> {
    return p[0] == "f" ? std::optional<std::string>("sha256:0123") : std::optional<std::string>("");
  }));
  EXPECT_TRUE(MustParse({"f==ünïcødé"}).Match(One("f", "ünïcødé")));
  // Spaces around the operator are skipped; before a field too.
  EXPECT_TRUE(MustParse({"f == v"}).Match(One("f", "v")));
  EXPECT_TRUE(MustParse({"  f==v, g"}).Match([](std::span<const std::string> p) -> std::optional<std::string> {
    return p[0] == "f" ? std::optional<std::string>("v") : std::optional<std::string>("");
  }));
  // ...but not after a selector (containerd's quirk).
  ExpectInvalid({"f==v "}, "unexpected input");
  ExpectInvalid({"f==v ,g"}, "unexpected input");
  ExpectInvalid({"f ,g"}, "expected an operator");
  ExpectInvalid({"f "}, "expected an operator");
  // A value may not start with what starts another token.
  ExpectInvalid({"f==.v"}, "expected value or quoted");
  ExpectInvalid({"f==,v"}, "expected value or quoted");
  ExpectInvalid({"f==/v/"}, "invalid quote encountered");
  ExpectInvalid({"f!=|v|"}, "invalid quote encountered");
  ExpectInvalid({"f==!v"}, "unsupported operator \"==!\"");
  ExpectInvalid({"f=="}, "expected value or quoted");
}

TEST(Filter, OperatorErrors) {
  ExpectInvalid({"f=v"}, "unsupported operator \"=\"");
  ExpectInvalid({"f===v"}, "unsupported operator \"===\"");
  ExpectInvalid({"f!v"}, "unsupported operator \"!\"");
  ExpectInvalid({"f~v"}, "unsupported operator \"~\"");
  ExpectInvalid({"f=~v"}, "unsupported operator \"=~\"");
  ExpectInvalid({"f<v"}, "expected an operator");
  ExpectInvalid({"f g"}, "expected an operator");
  ExpectInvalid({"==v"}, "expected field or quoted");
  ExpectInvalid({",f"}, "expected field or quoted");
  ExpectInvalid({"f,,g"}, "expected field or quoted");
  ExpectInvalid({"f..g"}, "expected field or quoted");
  ExpectInvalid({".f"}, "expected field or quoted");
  ExpectInvalid({"f==\"v\"x"}, "unexpected input");
  ExpectInvalid({"f==\"v\".x"}, "unexpected input");
}

TEST(Filter, QuotedStringsAndEscapes) {
  EXPECT_EQ(CanonicalOf(R"(f=="a, b")"), R"(f=="a, b")");
  EXPECT_EQ(CanonicalOf(R"(f=="\a\b\f\n\r\t\v\\\"")"), R"(f=="\x07\x08\x0c\x0a\x0d\x09\x0b\x5c\x22")");
  EXPECT_EQ(CanonicalOf(R"(f=="\x41\101\u0041\U00000041")"), R"(f=="AAAA")");
  // \u and \U are UTF-8 encoded; \x and octal are single bytes.
  EXPECT_EQ(CanonicalOf(R"(f=="\u00e9\xe9\351")"), R"(f=="\xc3\xa9\xe9\xe9")");
  EXPECT_EQ(CanonicalOf(R"(f=="\U0001F600")"), R"(f=="\xf0\x9f\x98\x80")");
  // A surrogate escape becomes U+FFFD, as Go's utf8.EncodeRune makes it.
  EXPECT_EQ(CanonicalOf(R"(f=="\ud800")"), R"(f=="\xef\xbf\xbd")");
  EXPECT_TRUE(MustParse({R"(f=="é")"}).Match(One("f", "é")));
  EXPECT_TRUE(MustParse({R"("quoted field"=="")"}).Match(One("quoted field", "")));

  ExpectInvalid({R"(f=="\q")"}, "illegal escape sequence");
  ExpectInvalid({R"(f=="\'")"}, "illegal escape sequence");
  ExpectInvalid({R"(f=="\/")"}, "illegal escape sequence");
  ExpectInvalid({R"(f=="\x4")"}, "illegal numeric escape sequence");
  ExpectInvalid({R"(f=="\8")"}, "illegal escape sequence");
  ExpectInvalid({R"(f=="\u12")"}, "illegal numeric escape sequence");
  ExpectInvalid({R"(f=="\400")"}, "unquoting failed: quote syntax error");        // above 255
  ExpectInvalid({R"(f=="\U00110000")"}, "unquoting failed: quote syntax error");  // above U+10FFFF
  ExpectInvalid({R"(f=="abc)"}, "quoted literal not terminated");
  ExpectInvalid({"f==\"a\nb\""}, "quoted literal not terminated");
  ExpectInvalid({R"(f=="abc\")"}, "quoted literal not terminated");
  // NUL and invalid UTF-8 are illegal anywhere, quoted or not.
  ExpectInvalid({std::string("f==\"a\0b\"", 8)}, "unexpected null");
  ExpectInvalid({std::string("f==a\0", 5)}, "unexpected input");
  ExpectInvalid({"f==\"\xff\""}, "rune error");
  ExpectInvalid({"f\xc3"}, "");
}

TEST(Filter, RegexQuotingAndSyntax) {
  // /.../ and |...| quote a regular expression; \/ and \| escape their quote.
  EXPECT_TRUE(MustParse({R"(f~=/^a\/b$/)"}).Match(One("f", "a/b")));
  EXPECT_TRUE(MustParse({R"(f~=|^a\|b$|)"}).Match(One("f", "a|b")));
  EXPECT_TRUE(MustParse({R"(f~=/^a,b c$/)"}).Match(One("f", "a,b c")));
  EXPECT_TRUE(MustParse({R"(f~="^x+$")"}).Match(One("f", "xxx")));
  ExpectInvalid({R"(f~=/a\|b/)"}, "illegal escape sequence");
  // A Go escape inside /.../ is decoded before the regex sees it; other
  // backslashes are illegal there, so regex escapes use character classes.
  EXPECT_TRUE(MustParse({R"(f~=/^a\tb$/)"}).Match(One("f", "a\tb")));
  ExpectInvalid({R"(f~=/\d/)"}, "illegal escape sequence");
  // Unquoted, a backslash is just a character: \d reaches the regex.
  EXPECT_TRUE(MustParse({R"(f~=^\d+$)"}).Match(One("f", "123")));
  EXPECT_TRUE(MustParse({"f~=(?i)^ABC$"}).Match(One("f", "abc")));

  // A pattern that does not compile is accepted and never matches
  // (containerd logs it and returns false).
  Filter bad = MustParse({"f~=a(b", "f~=[z", R"(f~=(a)\1)"});
  EXPECT_FALSE(bad.Match(One("f", "a(b")));
  EXPECT_FALSE(bad.Match(One("f", "")));
  // Digit runs libstdc++ would overflow on (a back-reference, a count).
  EXPECT_FALSE(MustParse({"f~=a\\666666666666666666666666"}).Match(One("f", "a")));
  EXPECT_FALSE(MustParse({"f~=[]{99999999999999999999}"}).Match(One("f", "a")));
  EXPECT_FALSE(MustParse({"f~=\\0"}).Match(One("f", std::string(1, '\0'))));
  // ECMAScript reads "[]" as an empty class, so this never matches (RE2
  // reads "[]a]" as one class of ']' and 'a').
  EXPECT_FALSE(MustParse({"f~=[]a]"}).Match(One("f", "a]")));
  // Too large for std::regex to handle safely: never matches either.
  EXPECT_FALSE(MustParse({"f~=(a{1000}){1000}"}).Match(One("f", "a")));
  EXPECT_FALSE(MustParse({"f~=a{1001}"}).Match(One("f", "a")));
  EXPECT_FALSE(MustParse({"f~=" + std::string(1025, 'a')}).Match(One("f", std::string(1025, 'a'))));
  EXPECT_TRUE(MustParse({"f~=" + std::string(1024, 'a')}).Match(One("f", std::string(1024, 'a'))));
  EXPECT_TRUE(MustParse({"f~=^(a|b)*$"}).Match(One("f", std::string(100000, 'a'))));
}

TEST(Filter, ErrorNamesTheFilter) {
  auto f = Filter::Parse(std::vector<std::string>{"name==a", "name="});
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(f.status().message().rfind("filter 2 of 2: filters: parse error: [name >|=|< ]", 0), 0u)
      << f.status().message();
}

TEST(Filter, CanonicalRoundTrips) {
  const std::vector<std::string> in = {R"(labels."containerd.io/gc.root",kind==committed)", "",
                                       R"(name!="a b",x.y~=/^[0-9]+\/x$/)", "_a.9"};
  Filter f = MustParse(in);
  auto canonical = f.Canonical();
  EXPECT_EQ(canonical, (std::vector<std::string>{R"(labels."containerd.io/gc.root",kind=="committed")", "",
                                                 R"(name!="a b",x.y~="^[0-9]+/x$")", "_a.9"}));
  EXPECT_EQ(MustParse(canonical).Canonical(), canonical);
  EXPECT_TRUE(MustParse({}).Canonical().empty());
}

}  // namespace
}  // namespace ocix::snapshotter
