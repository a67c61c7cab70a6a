// The claim loop: claims jobs (SKIP LOCKED + a lease), renews the leases of the jobs running here,
// and runs each claimed job (exchange_job.cpp) as a coroutine on the runner's strand, on a
// RequestIdExecutor so its log lines carry "job-<id>". The claim loop and the jobs are one task group,
// which stop() waits for after the stop signal. The shared parts (configuration, HTTP client,
// blocking pool, retry policy) are in runner_context.hpp.
#include "p2p/jobs/job_runner.hpp"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "exchange_job.hpp"
#include "p2p/log/request_id_executor.hpp"
#include "p2p/runtime/task_group.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {
namespace {

namespace asio = boost::asio;

// Owns the job for as long as its coroutine runs (a parameter lives in the coroutine frame).
asio::awaitable<void> run_owned(std::unique_ptr<ExchangeJob> job) { co_await job->run(); }

}  // namespace

struct JobRunner::Impl {
  Impl(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
       const crypto::SigningKeys& signing_keys, std::string owner, const runtime::Runtime& runtime,
       metrics::Registry& registry)
      : context(config, database, cipher, signing_keys, std::move(owner), runtime, registry), tasks(context.strand) {}

  RunnerContext context;
  runtime::TaskGroup tasks;     // the claim loop and every running job
  std::set<long long> running;  // on the strand only
  std::atomic<int> running_count{0};
  std::function<bool()> database_ready;
  asio::steady_timer* claim_timer = nullptr;  // the claim loop's wait; cancelled by wake() and stop()
  bool woken = false;  // a wake-up that came while the loop was not waiting: it claims again at once

  // On the strand: a new job, or a runner slot freed. Kept when the loop is busy claiming (a timer's
  // cancel reaches only a wait in progress), so the job does not wait for the next poll.
  void wake() {
    woken = true;
    if (claim_timer != nullptr) claim_timer->cancel();
  }

  asio::awaitable<void> claim_loop() {
    const auto& config = context.config;
    const auto& owner = context.owner;
    const auto lease = std::chrono::seconds(config.lease_seconds);
    auto last_renewal = Clock::now();
    asio::steady_timer timer(context.strand);
    claim_timer = &timer;
    while (!context.stop.requested()) {
      try {
        if (!database_ready()) {
          timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          continue;
        }
        // Renewed before claiming: after a database outage this instance's running jobs are its own
        // again before any claim (here or elsewhere) could take them as expired.
        if (Clock::now() - last_renewal > lease / 3 && !running.empty()) {
          const auto renewal_started = Clock::now();  // the leases run from here, not from the answer
          const std::vector<long long> ids(running.begin(), running.end());
          const auto held = co_await context.on_jobs(
              [&owner, lease, &ids](store::BatchJobRepository& jobs) { return jobs.renew_leases(owner, lease, ids); });
          for (long long id : running) {
            if (std::find(held.begin(), held.end(), id) == held.end()) context.lost.insert(id);
          }
          last_renewal = renewal_started;
        }
        const int free = config.concurrency - static_cast<int>(running.size());
        if (free > 0) {
          const std::vector<long long> mine(running.begin(), running.end());  // never claimed twice here
          auto claimed = co_await context.on_jobs([&owner, lease, free, &config, &mine](store::BatchJobRepository& jobs) {
            return jobs.claim(owner, lease, free, config.max_claims, mine);
          });
          for (auto& job : claimed) spawn(std::move(job));
        }
      } catch (const std::exception& error) {
        spdlog::warn("job runner: {}", error.what());
      }
      if (context.stop.requested()) break;  // (checked on the strand, as stop() cancels: no lost wake-up)
      if (std::exchange(woken, false)) continue;  // woken while claiming: claim again now
      timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));  // woken early by wake() and stop()
      woken = false;  // (this wait's wake-up is served by the claim that follows)
    }
    claim_timer = nullptr;
  }

  void spawn(store::ClaimedJob claimed) {
    const long long id = claimed.job.id;
    if (!running.insert(id).second) return;  // (claim() excludes running jobs: never reached)
    running_count = static_cast<int>(running.size());
    const log::RequestIdExecutor executor(context.strand, "job-" + std::to_string(id));
    asio::co_spawn(executor, run_owned(std::make_unique<ExchangeJob>(context, std::move(claimed))),
                   tasks.adapt([this, id](std::exception_ptr) {
                     running.erase(id);
                     context.lost.erase(id);
                     running_count = static_cast<int>(running.size());
                     if (!context.stop.requested()) wake();  // a slot is free: a queued job can start now
                   }));
  }

  // On the strand: the stop signal ends every wait (the claim loop's, the jobs' backoff pauses); a job
  // in a request leaves after it, at its next step, bounded by exchange.requestTimeoutSeconds.
  asio::awaitable<void> stop() {
    const auto grace = std::chrono::seconds(context.config.request_timeout_seconds + 5);
    context.stop_grace_ends = Clock::now() + grace;
    context.stop.request();
    if (claim_timer != nullptr) claim_timer->cancel();
    const bool ended = co_await runtime::wait_at_most(tasks, grace);  // (not in the if: GCC 12)
    if (!ended) {
      spdlog::warn("job runner: {} job(s) still in a request {} s after the stop; waiting for their time-outs",
                   running.size(), grace.count());
      co_await tasks.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
};

JobRunner::JobRunner(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
                     const crypto::SigningKeys& signing_keys, std::string instance_id, const runtime::Runtime& runtime,
                     metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(config, database, cipher, signing_keys, std::move(instance_id), runtime, registry)) {
  registry.gauge_reader("p2p_exchange_jobs_running", "Jobs running in this instance now.", "",
                        [impl = impl_.get()] { return static_cast<double>(impl->running_count.load()); });
}

JobRunner::~JobRunner() = default;

void JobRunner::start(std::function<bool()> database_ready) {
  impl_->database_ready = std::move(database_ready);
  asio::co_spawn(impl_->context.strand, impl_->claim_loop(), impl_->tasks.adapt([](std::exception_ptr failure) {
                   if (failure) spdlog::critical("job runner: the claim loop ended by an unexpected error");
                 }));
}

void JobRunner::wake() {
  asio::post(impl_->context.strand, [impl = impl_.get()] { impl->wake(); });
}

asio::awaitable<void> JobRunner::stop() {
  auto& strand = impl_->context.strand;  // named: GCC 12 and temporaries in a co_await expression
  co_await asio::co_spawn(strand, impl_->stop(), asio::use_awaitable);
}

}  // namespace p2p::jobs
