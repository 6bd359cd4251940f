#include "ocix/core/status.h"

#include <gtest/gtest.h>

namespace ocix::core {
namespace {

Result<int> Half(int v) {
  if (v % 2) return InvalidArgument("odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  OCIX_ASSIGN_OR_RETURN(int h, Half(v));
  return Half(h);
}

TEST(StatusTest, ContextAndCodes) {
  Status s = NotFound("blob x").WithContext("pull");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "pull: blob x");
  EXPECT_EQ(s.ToString(), "NotFound: pull: blob x");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Quarter(8).status().ok());
}

TEST(StatusTest, ErrnoMapping) {
  EXPECT_EQ(ErrnoError("open", ENOENT).code(), Code::kNotFound);
  EXPECT_EQ(ErrnoError("open", EACCES).code(), Code::kPermissionDenied);
  EXPECT_NE(ErrnoError("open", EIO).message().find("open: "), std::string::npos);
}

}  // namespace
}  // namespace ocix::core
