#include "ocix/core/registry/blob_reader.h"

#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

namespace ocix::core {
namespace {

class RegistryBlobReader final : public BlobReader {
 public:
  RegistryBlobReader(RegistryOptions options, Reference repo, std::string digest)
      : options_(std::move(options)), repo_(std::move(repo)), digest_(std::move(digest)) {}

  Result<std::vector<std::string>> ReadRanges(std::span<const ByteRange> ranges) override {
    Lease lease(*this);
    return lease.client().GetRanges(repo_, digest_, ranges);
  }

  std::string Describe() const override { return "registry blob " + repo_.Locator() + "@" + digest_; }

 private:
  // Borrows a client for one call and gives it back, even on early return.
  class Lease {
   public:
    explicit Lease(RegistryBlobReader& r) : reader_(r), client_(r.Acquire()) {}
    ~Lease() { reader_.Release(std::move(client_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    RegistryClient& client() { return *client_; }

   private:
    RegistryBlobReader& reader_;
    std::unique_ptr<RegistryClient> client_;
  };

  std::unique_ptr<RegistryClient> Acquire() {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !idle_.empty() || created_ < kMaxRegistryBlobReaderClients; });
      if (!idle_.empty()) {
        std::unique_ptr<RegistryClient> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
      ++created_;
    }
    // Outside the lock: callers returning clients need not wait for a constructor.
    return std::make_unique<RegistryClient>(options_);
  }

  void Release(std::unique_ptr<RegistryClient> c) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  const RegistryOptions options_;
  const Reference repo_;
  const std::string digest_;

  // Lock order: mu_ is a leaf; no request is made while holding it.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RegistryClient>> idle_;  // GUARDED_BY(mu_)
  int created_ = 0;                                    // GUARDED_BY(mu_); never exceeds the cap
};

}  // namespace

std::unique_ptr<BlobReader> MakeRegistryBlobReader(RegistryOptions options, Reference repo, std::string digest) {
  return std::make_unique<RegistryBlobReader>(std::move(options), std::move(repo), std::move(digest));
}

}  // namespace ocix::core
