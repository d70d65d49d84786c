#include "cache/exact/redis_url.h"

#include "absl/status/status.h"
#include "cache/exact/exact_cache_factory.h"
#include "gtest/gtest.h"

namespace saola::cache {
namespace {

TEST(RedisUrlTest, ParsesTheAcceptedForms) {
  absl::StatusOr<RedisEndpoint> ep = ParseRedisUrl("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->db, 2);
  EXPECT_EQ(ep->Describe(), "127.0.0.1:6380");

  ep = ParseRedisUrl("redis://redis.default.svc");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "redis.default.svc");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 0);

  ep = ParseRedisUrl("redis://:s3cret@cache:7000/");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->password, "s3cret");
  EXPECT_EQ(ep->username, "");
  EXPECT_EQ(ep->port, 7000);
  EXPECT_EQ(ep->Describe(), "cache:7000");  // never the password

  ep = ParseRedisUrl("redis://router:pw@[::1]:7001/15");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->username, "router");
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 7001);
  EXPECT_EQ(ep->db, 15);
  EXPECT_EQ(ep->Describe(), "[::1]:7001");
}

TEST(RedisUrlTest, RejectsMalformedUrlsNamingTheFlag) {
  for (const char* bad :
       {"", "127.0.0.1:6379", "http://h:6379", "rediss://h:6379", "redis://", "redis://:6379",
        "redis://h:", "redis://h:0", "redis://h:65536", "redis://h:12ab", "redis://h:-1",
        "redis://h:6379/x", "redis://h:6379/0/extra", "redis://h:6379/-1", "redis://h:6379/99999999",
        "redis://user@h", "redis://[::1", "redis://[::1]x", "redis://h h:1"}) {
    absl::StatusOr<RedisEndpoint> ep = ParseRedisUrl(bad);
    ASSERT_FALSE(ep.ok()) << bad;
    EXPECT_EQ(ep.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(ep.status().message().find("--redis"), std::string::npos) << ep.status();
  }
}

TEST(RedisUrlTest, ErrorsDoNotEchoThePassword) {
  absl::StatusOr<RedisEndpoint> ep = ParseRedisUrl("redis://u:topsecret@h:99999");
  ASSERT_FALSE(ep.ok());
  EXPECT_EQ(ep.status().message().find("topsecret"), std::string::npos) << ep.status();
}

TEST(MakeExactCacheTest, EmptyUrlIsMemoryAndBadUrlIsRejected) {
  absl::StatusOr<std::unique_ptr<ExactCache>> cache = MakeExactCache("");
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->backend(), "memory");
  absl::StatusOr<std::unique_ptr<ExactCache>> bad = MakeExactCache("redis://h:0");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace saola::cache
