// identity/tokens.h: roles, type patterns, and the tokens file, as tables.
#include "identity/tokens.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "store/durable_file.h"
#include "store/hash_chain.h"
#include "test_util.h"

namespace jobstate::identity {
namespace {

using jobstate::testing::TempDir;

TEST(IdentityRoles, WhatEachRoleMayDo) {
  struct Row {
    Role role;
    bool read, submit, work;
  };
  for (const Row& r : {Row{Role::kReader, true, false, false}, Row{Role::kSubmitter, true, true, false},
                       Row{Role::kWorker, true, false, true}, Row{Role::kAdmin, true, true, true}}) {
    SCOPED_TRACE(role_name(r.role));
    EXPECT_EQ(role_allows(r.role, Action::kRead), r.read);
    EXPECT_EQ(role_allows(r.role, Action::kSubmit), r.submit);
    EXPECT_EQ(role_allows(r.role, Action::kWork), r.work);
    EXPECT_EQ(parse_role(role_name(r.role)), r.role);
  }
  EXPECT_FALSE(parse_role("root"));
  EXPECT_FALSE(parse_role("Admin"));
}

TEST(IdentityTypes, Patterns) {
  struct Row {
    const char* pattern;
    const char* type;
    bool matches;
  };
  for (const Row& r : {Row{"", "anything", true}, Row{"report", "report", true}, Row{"report", "reports", false},
                       Row{"email.*", "email.send", true}, Row{"email.*", "email.", true},
                       Row{"email.*", "email", false}, Row{"email.*", "xemail.send", false},
                       Row{"*.nightly", "db.nightly", true}, Row{"a*b*c", "aXXbYYc", true},
                       Row{"a*b*c", "aXXbYY", false}, Row{"*", "x", true}, Row{"report,sms", "sms", true},
                       Row{"report,sms", "email", false}, Row{"email.*,sms", "email.x", true}}) {
    EXPECT_EQ(types_pattern_matches(r.pattern, r.type), r.matches) << r.pattern << " ~ " << r.type;
    EXPECT_TRUE(is_valid_types_pattern(r.pattern)) << r.pattern;
  }
  for (const char* bad : {",", "a,", ",a", "a,,b", "a b", "a/b", "é"})
    EXPECT_FALSE(is_valid_types_pattern(bad)) << bad;
}

TEST(IdentityTokensFile, AddAuthenticateRevoke) {
  TempDir dir;
  const std::string path = dir.sub("tokens.json");
  auto a = add_token(path, "webapp", Role::kSubmitter, "", 1000);
  auto b = add_token(path, "fleet", Role::kWorker, "email.*", 2000);
  ASSERT_TRUE(a && b);
  auto set = TokenSet::open(path);
  ASSERT_TRUE(set) << set.error().message;
  auto who = (*set)->authenticate(*b);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->name, "fleet");
  EXPECT_EQ(who->role, Role::kWorker);
  EXPECT_EQ(who->types, "email.*");
  EXPECT_EQ(who->sha256, sha256_hex(*b));
  EXPECT_FALSE((*set)->authenticate(""));
  EXPECT_FALSE((*set)->authenticate(b->substr(0, b->size() - 1)));
  EXPECT_FALSE((*set)->authenticate(sha256_hex(*b)));  // the stored hash is not a token

  auto tokens = read_tokens_file(path);
  ASSERT_TRUE(tokens);
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].created_at_ms, 1000);

  ASSERT_TRUE(revoke_token(path, "webapp"));
  auto in_flight = (*set)->authenticate(*a);
  ASSERT_TRUE(in_flight) << "still loaded until reload";
  ASSERT_TRUE((*set)->reload());
  EXPECT_FALSE((*set)->authenticate(*a));
  EXPECT_EQ(in_flight->name, "webapp") << "a request in flight keeps the entry it was let in by";
  EXPECT_TRUE((*set)->authenticate(*b));
  EXPECT_FALSE(revoke_token(path, "webapp"));
  EXPECT_FALSE(add_token(path, "fleet", Role::kReader, "", 0)) << "names are unique";
}

TEST(IdentityTokensFile, MalformedFilesAreRefusedWithTheirName) {
  TempDir dir;
  const std::string path = dir.sub("tokens.json");
  EXPECT_FALSE(read_tokens_file(path));  // missing
  const std::string hash(64, 'a');
  for (const std::string& text : std::vector<std::string>{
           std::string("not json"), std::string("[]"), std::string("{\"tokens\": {}}"),
        "{\"tokens\": [{\"name\": \"x\", \"role\": \"root\", \"sha256\": \"" + hash + "\"}]}",
        std::string("{\"tokens\": [{\"name\": \"x\", \"role\": \"reader\", \"sha256\": \"abc\"}]}"),
        "{\"tokens\": [{\"name\": \"x\", \"role\": \"reader\", \"sha256\": \"" + std::string(64, 'A') + "\"}]}",
        "{\"tokens\": [{\"name\": \"\", \"role\": \"reader\", \"sha256\": \"" + hash + "\"}]}",
        "{\"tokens\": [{\"name\": \"x\", \"role\": \"reader\", \"types\": \"a,,b\", \"sha256\": \"" + hash + "\"}]}",
        "{\"tokens\": [{\"name\": \"x\", \"role\": \"reader\", \"sha256\": \"" + hash +
            "\"}, {\"name\": \"x\", \"role\": \"admin\", \"sha256\": \"" + hash + "\"}]}"}) {
    ASSERT_TRUE(write_file_durably(path, text, 0600));
    auto r = read_tokens_file(path);
    EXPECT_FALSE(r) << text;
    if (!r) {
      EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
    }
  }
  ASSERT_TRUE(write_file_durably(path, "{\"tokens\": []}", 0600));
  EXPECT_TRUE(read_tokens_file(path));
}

}  // namespace
}  // namespace jobstate::identity
