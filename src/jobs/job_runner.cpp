// The claim loop: claims jobs (SKIP LOCKED + a lease), renews the leases of the jobs running here,
// and runs each claimed job (exchange_job.cpp) as a coroutine on the runner's one I/O thread, on a
// RequestIdExecutor so its log lines carry "job-<id>". The shared parts (configuration, HTTP client,
// SQL threads, retry policy) are in runner_context.hpp.
#include "p2p/jobs/job_runner.hpp"

#include <algorithm>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "exchange_job.hpp"
#include "p2p/log/request_id_executor.hpp"
#include "runner_context.hpp"

namespace p2p::jobs {
namespace {

namespace asio = boost::asio;

// Owns the job for as long as its coroutine runs (a parameter lives in the coroutine frame).
asio::awaitable<void> run_owned(std::unique_ptr<ExchangeJob> job) { co_await job->run(); }

}  // namespace

struct JobRunner::Impl {
  Impl(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
       std::string owner, http::Metrics& m)
      : context(config, database, cipher, std::move(owner)), metrics(m) {}

  RunnerContext context;
  http::Metrics& metrics;
  std::thread thread;
  std::set<long long> running;  // touched on the I/O thread only
  std::atomic<int> running_count{0};
  std::function<bool()> database_ready;
  asio::steady_timer* claim_timer = nullptr;  // the claim loop's wait; cancelled by wake()

  asio::awaitable<void> claim_loop() {
    const auto& config = context.config;
    const auto& owner = context.owner;
    const auto lease = std::chrono::seconds(config.lease_seconds);
    auto last_renewal = Clock::now();
    asio::steady_timer timer(context.io);
    claim_timer = &timer;
    while (!context.stopping) {
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
      timer.expires_after(std::chrono::milliseconds(config.poll_interval_milliseconds));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));  // woken early by wake()
    }
    claim_timer = nullptr;
  }

  void spawn(store::ClaimedJob claimed) {
    const long long id = claimed.job.id;
    if (!running.insert(id).second) return;  // (claim() excludes running jobs: never reached)
    running_count = static_cast<int>(running.size());
    const log::RequestIdExecutor executor(context.io.get_executor(), "job-" + std::to_string(id));
    asio::co_spawn(executor, run_owned(std::make_unique<ExchangeJob>(context, std::move(claimed))),
                   [this, id](std::exception_ptr) {
                     running.erase(id);
                     context.lost.erase(id);
                     running_count = static_cast<int>(running.size());
                   });
  }
};

JobRunner::JobRunner(const config::ExchangeConfig& config, store::Database& database, const crypto::TokenCipher& cipher,
                     std::string instance_id, http::Metrics& metrics)
    : impl_(std::make_unique<Impl>(config, database, cipher, std::move(instance_id), metrics)) {
  metrics.add_collector([impl = impl_.get()](std::string& out) {
    const auto& context = impl->context;
    out += "# HELP p2p_exchange_pages_total Pages written to the target by this instance.\n";
    out += "# TYPE p2p_exchange_pages_total counter\n";
    out += http::metric_line("p2p_exchange_pages_total", "", static_cast<double>(context.pages_written.load()));
    out += "# HELP p2p_exchange_resources_total Resources written to the target by this instance.\n";
    out += "# TYPE p2p_exchange_resources_total counter\n";
    out += http::metric_line("p2p_exchange_resources_total", "", static_cast<double>(context.resources_written.load()));
    out += "# HELP p2p_exchange_jobs_total Jobs ended by this instance, by result.\n";
    out += "# TYPE p2p_exchange_jobs_total counter\n";
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"completed\"", static_cast<double>(context.completed.load()));
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"failed\"", static_cast<double>(context.failed.load()));
    out += http::metric_line("p2p_exchange_jobs_total", "result=\"stopped\"", static_cast<double>(context.stopped.load()));
    out += "# HELP p2p_exchange_jobs_paused_total Times this instance paused a job through an outage.\n";
    out += "# TYPE p2p_exchange_jobs_paused_total counter\n";
    out += http::metric_line("p2p_exchange_jobs_paused_total", "", static_cast<double>(context.paused.load()));
    out += "# HELP p2p_exchange_jobs_running Jobs running in this instance now.\n";
    out += "# TYPE p2p_exchange_jobs_running gauge\n";
    out += http::metric_line("p2p_exchange_jobs_running", "", impl->running_count.load());
  });
}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start(std::function<bool()> database_ready) {
  impl_->database_ready = std::move(database_ready);
  asio::co_spawn(impl_->context.io, impl_->claim_loop(), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->context.io.run(); });
}

void JobRunner::wake() {
  asio::post(impl_->context.io, [impl = impl_.get()] {
    if (impl->claim_timer != nullptr) impl->claim_timer->cancel();
  });
}

void JobRunner::stop() {
  if (impl_->context.stopping.exchange(true)) return;
  if (!impl_->thread.joinable()) return;
  // Running jobs notice `stopping` at their next step (at most one request timeout away) and leave
  // their job for the next lease holder; then the loop ends.
  asio::co_spawn(
      impl_->context.io,
      [impl = impl_.get()]() -> asio::awaitable<void> {
        auto& context = impl->context;
        const auto deadline = Clock::now() + std::chrono::seconds(context.config.request_timeout_seconds + 5);
        asio::steady_timer timer(context.io);
        while (!impl->running.empty() && Clock::now() < deadline) {
          timer.expires_after(std::chrono::milliseconds(20));
          co_await timer.async_wait(asio::use_awaitable);
        }
        if (!impl->running.empty()) {
          spdlog::warn("job runner: {} job(s) still busy at shutdown; their leases will lapse", impl->running.size());
          // Their coroutines still reference the client: keep it alive until the process exits.
          static_cast<void>(context.client.release());
        }
        context.io.stop();
      },
      asio::detached);
  impl_->thread.join();
  impl_->context.sql.join();
}

}  // namespace p2p::jobs
