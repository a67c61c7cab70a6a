// HttpClient against small scripted HTTP(S) servers running in the test process on 127.0.0.1.
#include "p2p/http/client.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <zlib.h>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using p2p::http::ClientOptions;
using p2p::http::ClientRequest;
using p2p::http::ClientResponse;
using p2p::http::FetchError;
using p2p::http::HttpClient;
using Kind = FetchError::Kind;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ---- a scripted server -------------------------------------------------------------------------

using WireRequest = bhttp::request<bhttp::string_body>;

struct Reply {
  std::string raw;                              // written back byte for byte
  bool close = false;                           // close the connection after writing
  bool hang = false;                            // never answer; wait for the client to go away
  std::chrono::milliseconds delay{0};           // wait before answering
  std::function<bool()> hold;                   // when set: answer only once it returns true (polled)
};
using Handler = std::function<Reply(const WireRequest&)>;

std::string response(int status, const std::vector<std::pair<std::string, std::string>>& headers,
                     const std::string& body, bool with_content_length = true) {
  std::string raw = "HTTP/1.1 " + std::to_string(status) + " Status\r\n";
  for (const auto& [name, value] : headers) raw += name + ": " + value + "\r\n";
  if (with_content_length) raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return raw + "\r\n" + body;
}

std::string ok(const std::string& body) { return response(200, {{"Content-Type", "text/plain"}}, body); }

// Accepts on 127.0.0.1:0 and answers each request with what the handler says. Its state lives in a
// shared_ptr the coroutines hold, so the server may go away before the io_context does.
class TestServer {
 public:
  struct State {
    explicit State(asio::io_context& io) : acceptor(io) {}
    tcp::acceptor acceptor;
    Handler handler;
    std::shared_ptr<ssl::context> tls;
    int accepted = 0;
    int closed = 0;
    std::vector<WireRequest> requests;
    std::vector<std::string> server_names;  // SNI of each TLS handshake, "" when none was sent
  };

  TestServer(asio::io_context& io, Handler handler, std::shared_ptr<ssl::context> tls = nullptr)
      : state_(std::make_shared<State>(io)) {
    state_->handler = std::move(handler);
    state_->tls = std::move(tls);
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen();
    asio::co_spawn(io, accept_loop(state_), asio::detached);
  }
  ~TestServer() {
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
  }

  std::uint16_t port() const { return state_->acceptor.local_endpoint().port(); }
  std::string url(const std::string& path, const std::string& host = "127.0.0.1") const {
    return std::string(state_->tls ? "https" : "http") + "://" + host + ":" + std::to_string(port()) + path;
  }
  const State& state() const { return *state_; }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<State> state) {
    for (;;) {
      auto [error, socket] = co_await state->acceptor.async_accept(kTuple);
      if (error) co_return;
      ++state->accepted;
      asio::co_spawn(state->acceptor.get_executor(), session(state, std::move(socket)), asio::detached);
    }
  }

  static asio::awaitable<void> session(std::shared_ptr<State> state, tcp::socket socket) {
    if (state->tls) {
      ssl::stream<tcp::socket> stream(std::move(socket), *state->tls);
      auto [error] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
      if (!error) {
        const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        state->server_names.emplace_back(name != nullptr ? name : "");
        co_await serve(state, stream);
      }
    } else {
      co_await serve(state, socket);
    }
    ++state->closed;
  }

  template <class Stream>
  static asio::awaitable<void> serve(std::shared_ptr<State> state, Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      WireRequest request;
      auto [read_error, read] = co_await bhttp::async_read(stream, buffer, request, kTuple);
      if (read_error) co_return;
      state->requests.push_back(request);
      const Reply reply = state->handler(request);
      if (reply.hang) {
        std::array<char, 1> byte{};
        co_await stream.async_read_some(asio::buffer(byte), kTuple);
        co_return;
      }
      if (reply.delay.count() > 0) {
        asio::steady_timer timer(stream.get_executor(), reply.delay);
        co_await timer.async_wait(kTuple);
      }
      if (reply.hold) {
        asio::steady_timer timer(stream.get_executor());
        while (!reply.hold()) {
          timer.expires_after(5ms);
          co_await timer.async_wait(kTuple);
        }
      }
      auto [write_error, written] = co_await asio::async_write(stream, asio::buffer(reply.raw), kTuple);
      if (write_error || reply.close) co_return;
    }
  }

  std::shared_ptr<State> state_;
};

// ---- running coroutines in a test -------------------------------------------------------------

// Runs the io_context on this thread until the awaitable is done (at most 20 s).
template <class T>
T run(asio::io_context& io, asio::awaitable<T> work) {
  auto future = asio::co_spawn(io, std::move(work), asio::use_future);
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (future.wait_for(0s) != std::future_status::ready) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("the test did not finish in 20 s");
    if (io.stopped()) io.restart();  // it stops whenever it runs out of work, e.g. between two requests
    io.run_one_for(100ms);
  }
  return future.get();
}

ClientResponse fetch(asio::io_context& io, HttpClient& client, ClientRequest request) {
  return run(io, client.send(std::move(request)));
}

ClientResponse get(asio::io_context& io, HttpClient& client, const std::string& url) {
  return fetch(io, client, ClientRequest{.url = url});
}

// The FetchError the request fails with (a test failure when it succeeds).
FetchError fetch_error(asio::io_context& io, HttpClient& client, ClientRequest request) {
  try {
    const auto answered = fetch(io, client, std::move(request));
    ADD_FAILURE() << "the request succeeded with status " << answered.status;
  } catch (const FetchError& error) {
    return error;
  }
  return FetchError(Kind::kProtocol, "(no error)");
}

asio::awaitable<void> sleep_until(std::function<bool()> condition) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!condition()) {
    timer.expires_after(5ms);
    co_await timer.async_wait(kTuple);
  }
}

// ---- test data --------------------------------------------------------------------------------

std::string gzip(const std::string& data) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct Certificate {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed P-256 certificate with the given subjectAltName (e.g. "IP:127.0.0.1,DNS:localhost").
Certificate make_self_signed(const std::string& common_name, const std::string& subject_alt_name) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX context{};
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name, subject_alt_name.c_str());
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(cert, key, EVP_sha256());

  auto pem = [](auto write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return text;
  };
  Certificate out;
  out.cert_pem = pem([&](BIO* bio) { PEM_write_bio_X509(bio, cert); });
  out.key_pem = pem([&](BIO* bio) { PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

std::shared_ptr<ssl::context> server_tls(const Certificate& certificate) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->use_certificate_chain(asio::buffer(certificate.cert_pem));
  context->use_private_key(asio::buffer(certificate.key_pem), ssl::context::pem);
  return context;
}

// A file in the test temp dir, removed when it goes out of scope.
struct TempFile {
  explicit TempFile(const std::string& content) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("p2p-http-client-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".pem");
    std::ofstream(path) << content;
  }
  ~TempFile() { std::filesystem::remove(path); }
  std::filesystem::path path;
};

std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();  // nothing listens there once the acceptor closes
}

// ---- tests ------------------------------------------------------------------------------------

TEST(HttpClient, GetReturnsStatusHeadersAndBodyAndSendsTheDefaultHeaders) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) {
    return Reply{response(200, {{"Content-Type", "application/fhir+json"}, {"ETag", "W/\"3\""}}, R"({"id":"p1"})")};
  });
  HttpClient client(io.get_executor(), {});

  const auto answer = fetch(io, client,
                            {.url = server.url("/fhir/Patient?name=a%20b#section"),
                             .headers = {{"Accept", "application/fhir+json"}, {"Authorization", "Bearer t0ken"}}});

  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, R"({"id":"p1"})");
  EXPECT_EQ(answer.header("content-type"), "application/fhir+json");
  EXPECT_EQ(answer.header("ETAG"), "W/\"3\"");
  EXPECT_EQ(answer.header("content-length"), "11");
  EXPECT_EQ(answer.header("X-Missing"), std::nullopt);
  ASSERT_EQ(server.state().requests.size(), 1U);
  const auto& seen = server.state().requests[0];
  EXPECT_EQ(seen.method(), bhttp::verb::get);
  EXPECT_EQ(seen.target(), "/fhir/Patient?name=a%20b");
  EXPECT_EQ(seen[bhttp::field::host], "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(seen[bhttp::field::user_agent], "p2p-exchange");
  EXPECT_EQ(seen[bhttp::field::accept_encoding], "gzip");
  EXPECT_EQ(seen[bhttp::field::accept], "application/fhir+json");
  EXPECT_EQ(seen[bhttp::field::authorization], "Bearer t0ken");
  EXPECT_EQ(seen.count(bhttp::field::content_length), 0U);
  EXPECT_TRUE(seen.keep_alive());
}

TEST(HttpClient, ErrorStatusesAreResponsesNotErrors) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) { return Reply{response(404, {}, "no such patient")}; });
  HttpClient client(io.get_executor(), {});

  const auto answer = get(io, client, server.url(""));

  EXPECT_EQ(answer.status, 404);
  EXPECT_EQ(answer.body, "no such patient");
  EXPECT_EQ(server.state().requests.at(0).target(), "/");
}

TEST(HttpClient, PostSendsTheBodyWithContentLength) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) {
    return Reply{response(201, {{"Location", "Patient/9"}}, "got " + request.body())};
  });
  HttpClient client(io.get_executor(), {.user_agent = "p2p-exchange/test"});

  const auto answer = fetch(io, client,
                            {.method = "POST",
                             .url = server.url("/fhir"),
                             .headers = {{"Content-Type", "application/fhir+json"}, {"Content-Length", "999"}},
                             .body = R"({"a":1})"});

  EXPECT_EQ(answer.status, 201);
  EXPECT_EQ(answer.body, R"(got {"a":1})");
  const auto& seen = server.state().requests.at(0);
  EXPECT_EQ(seen.method(), bhttp::verb::post);
  EXPECT_EQ(seen[bhttp::field::content_length], "7");
  EXPECT_EQ(seen[bhttp::field::content_type], "application/fhir+json");
  EXPECT_EQ(seen[bhttp::field::user_agent], "p2p-exchange/test");
}

TEST(HttpClient, TheResponseBodyTakesOverTheRequestsBufferAndReplacesItsText) {
  asio::io_context io;
  const std::string page(100'000, 'p');
  TestServer server(io, [&page](const WireRequest&) { return Reply{response(200, {}, page)}; });
  HttpClient client(io.get_executor(), {});
  std::string buffer(150'000, 'o');  // an earlier page's text: replaced, not appended to
  const char* const storage = buffer.data();

  const auto answer = fetch(io, client, {.url = server.url("/page/2"), .response_buffer = std::move(buffer)});

  EXPECT_EQ(answer.body, page);
  EXPECT_EQ(answer.body.data(), storage);  // read into the buffer given, not a new allocation
}

TEST(HttpClient, InterimResponsesAreSkippedAndTheBufferServesTheFinalOne) {
  asio::io_context io;
  const std::string page(50'000, 'p');
  TestServer server(io, [&page](const WireRequest&) {
    return Reply{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
                 response(200, {}, page)};
  });
  HttpClient client(io.get_executor(), {});
  std::string buffer(80'000, 'o');
  const char* const storage = buffer.data();

  const auto answer = fetch(io, client, {.url = server.url("/page/3"), .response_buffer = std::move(buffer)});

  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, page);
  EXPECT_EQ(answer.body.data(), storage);
}

TEST(HttpClient, ABorrowedRequestCanBeSentAgainAsItIs) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) { return Reply{response(200, {}, "got " + request.body())}; });
  HttpClient client(io.get_executor(), {});
  const ClientRequest post{.method = "POST", .url = server.url("/fhir"), .body = std::string(70'000, 'b')};

  const auto first = run(io, client.send_borrowed(post));
  const auto second = run(io, client.send_borrowed(post));  // a retry: the same bytes again

  EXPECT_EQ(first.body, "got " + std::string(70'000, 'b'));
  EXPECT_EQ(second.body, first.body);
  ASSERT_EQ(server.state().requests.size(), 2U);
  EXPECT_EQ(server.state().requests[1].body(), std::string(70'000, 'b'));
}

TEST(HttpClient, DecodesGzipResponsesAndDropsTheEncodingHeaders) {
  asio::io_context io;
  std::string bundle = R"({"resourceType":"Bundle","entry":[)";
  for (int i = 0; i < 200; ++i) bundle += R"({"resource":{"resourceType":"Patient","id":")" + std::to_string(i) + "\"}},";
  bundle.back() = ']';
  bundle += "}";
  const std::string compressed = gzip(bundle);
  ASSERT_LT(compressed.size(), bundle.size() / 4);
  TestServer server(io, [&](const WireRequest&) {
    return Reply{response(200, {{"Content-Type", "application/fhir+json"}, {"Content-Encoding", "gzip"}}, compressed)};
  });
  HttpClient client(io.get_executor(), {});

  const auto answer = get(io, client, server.url("/fhir/Patient"));

  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, bundle);
  EXPECT_EQ(answer.header("Content-Encoding"), std::nullopt);
  EXPECT_EQ(answer.header("Content-Length"), std::nullopt);
  EXPECT_EQ(answer.header("Content-Type"), "application/fhir+json");
}

TEST(HttpClient, CorruptGzipIsAProtocolError) {
  asio::io_context io;
  const std::string compressed = gzip(std::string(5000, 'x'));
  TestServer server(io, [&](const WireRequest& request) {
    const std::string body = request.target() == "/truncated" ? compressed.substr(0, compressed.size() / 2)
                                                              : "this is not gzip at all";
    return Reply{response(200, {{"Content-Encoding", "gzip"}}, body)};
  });
  HttpClient client(io.get_executor(), {});

  const auto truncated = fetch_error(io, client, {.url = server.url("/truncated")});
  EXPECT_EQ(truncated.kind(), Kind::kProtocol);
  EXPECT_NE(std::string(truncated.what()).find("truncated"), std::string::npos) << truncated.what();
  const auto garbage = fetch_error(io, client, {.url = server.url("/garbage")});
  EXPECT_EQ(garbage.kind(), Kind::kProtocol);
  EXPECT_NE(std::string(garbage.what()).find("not valid gzip"), std::string::npos) << garbage.what();
}

TEST(HttpClient, ResponsesOverTheLimitAreTooLarge) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) {
    if (request.target() == "/chunked") {
      std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      for (int i = 0; i < 3; ++i) raw += "258\r\n" + std::string(600, 'c') + "\r\n";  // 3 x 600 bytes
      return Reply{raw + "0\r\n\r\n"};
    }
    const std::string size = request.target().substr(1);
    return Reply{response(200, {}, std::string(std::stoul(size), 'a'))};
  });
  HttpClient client(io.get_executor(), {.max_response_bytes = 1000});

  EXPECT_EQ(get(io, client, server.url("/1000")).body.size(), 1000U);
  const auto declared = fetch_error(io, client, {.url = server.url("/1001")});
  EXPECT_EQ(declared.kind(), Kind::kTooLarge);
  EXPECT_EQ(std::string(declared.what()),
            "GET http://127.0.0.1:" + std::to_string(server.port()) +
                "/1001: the response body is larger than the limit of 1000 bytes");
  EXPECT_EQ(fetch_error(io, client, {.url = server.url("/chunked")}).kind(), Kind::kTooLarge);

  // A request may set its own limit, lower or higher than the client's.
  EXPECT_EQ(fetch(io, client, {.url = server.url("/1500"), .max_response_bytes = 2000}).body.size(), 1500U);
  const auto own = fetch_error(io, client, {.url = server.url("/600"), .max_response_bytes = 500});
  EXPECT_EQ(own.kind(), Kind::kTooLarge);
  EXPECT_NE(std::string(own.what()).find("larger than the limit of 500 bytes"), std::string::npos) << own.what();
}

// Oversized headers are their own kind: the caller tells "the page is too large" (raise a limit)
// from "the server's headers are" (nothing to raise) without reading the message.
TEST(HttpClient, OversizedResponseHeadersAreTheirOwnKind) {
  asio::io_context io;
  TestServer server(io, [&](const WireRequest&) {
    return Reply{response(200, {{"X-Padding", std::string(80 * 1024, 'a')}}, "{}")};
  });
  HttpClient client(io.get_executor(), {.max_response_bytes = 1024 * 1024});

  const auto error = fetch_error(io, client, {.url = server.url("/fat-headers")});

  EXPECT_EQ(error.kind(), Kind::kHeadersTooLarge);
  EXPECT_EQ(p2p::http::to_string(error.kind()), "headers_too_large");
  EXPECT_NE(std::string(error.what()).find("the response headers are larger than the limit of 65536 bytes"),
            std::string::npos)
      << error.what();
}

TEST(HttpClient, GzipBombIsTooLargeAfterDecoding) {
  asio::io_context io;
  const std::string bomb = gzip(std::string(50 * 1024 * 1024, '\0'));
  ASSERT_LT(bomb.size(), 100U * 1024);  // the wire size is far under the limit: only the output is over
  TestServer server(io, [&](const WireRequest&) { return Reply{response(200, {{"Content-Encoding", "gzip"}}, bomb)}; });
  HttpClient client(io.get_executor(), {.max_response_bytes = 1024 * 1024});

  const auto error = fetch_error(io, client, {.url = server.url("/bomb")});

  EXPECT_EQ(error.kind(), Kind::kTooLarge);
  EXPECT_NE(std::string(error.what()).find("gzip-decoded response is larger than the limit of 1048576 bytes"),
            std::string::npos)
      << error.what();
}

TEST(HttpClient, ServerThatNeverAnswersTimesOut) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) { return Reply{.hang = true}; });
  HttpClient client(io.get_executor(), {.read_timeout_seconds = 1});

  const auto started = std::chrono::steady_clock::now();
  const auto error = fetch_error(io, client, {.url = server.url("/slow")});
  const auto elapsed = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(error.kind(), Kind::kTimeout);
  EXPECT_EQ(std::string(error.what()), "GET http://127.0.0.1:" + std::to_string(server.port()) +
                                           "/slow: no complete response arrived within 1 s (read_timeout_seconds)");
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 3s);
}

TEST(HttpClient, RefusedConnectionIsAConnectError) {
  asio::io_context io;
  const auto port = closed_port();
  HttpClient client(io.get_executor(), {});

  const auto error = fetch_error(io, client, {.url = "http://127.0.0.1:" + std::to_string(port) + "/"});

  EXPECT_EQ(error.kind(), Kind::kConnect);
  EXPECT_EQ(std::string(error.what()), "connecting to 127.0.0.1:" + std::to_string(port) + " failed: Connection refused");
  EXPECT_EQ(client.stats().connections_opened, 0U);
}

TEST(HttpClient, UnknownHostIsAResolveError) {
  asio::io_context io;
  HttpClient client(io.get_executor(), {});

  const auto error = fetch_error(io, client, {.url = "http://no-such-host.invalid/"});

  // A resolver that gets no answer (no network, a slow DNS server) fails by the connect deadline instead.
  const std::string what = error.what();
  if (error.kind() == Kind::kTimeout) {
    EXPECT_TRUE(what.starts_with("resolving no-such-host.invalid took longer than ")) << what;
  } else {
    EXPECT_EQ(error.kind(), Kind::kResolve) << what;
    EXPECT_TRUE(what.starts_with("resolving no-such-host.invalid failed: ")) << what;
  }
}

TEST(HttpClient, ReusesAKeptAliveConnectionForTheSameOrigin) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) { return Reply{ok(std::string(request.target()))}; });
  HttpClient client(io.get_executor(), {});

  for (const std::string path : {"/a", "/b", "/c"}) EXPECT_EQ(get(io, client, server.url(path)).body, path);

  EXPECT_EQ(client.stats().connections_opened, 1U);
  EXPECT_EQ(client.stats().requests, 3U);
  EXPECT_EQ(client.stats().idle_connections, 1U);
  EXPECT_EQ(server.state().accepted, 1);
}

TEST(HttpClient, DoesNotReuseAConnectionIdleLongerThanTheIdleTimeout) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) { return Reply{ok(std::string(request.target()))}; });
  HttpClient client(io.get_executor(), {.idle_timeout_seconds = 1});

  EXPECT_EQ(get(io, client, server.url("/a")).body, "/a");
  EXPECT_EQ(get(io, client, server.url("/b")).body, "/b");
  EXPECT_EQ(client.stats().connections_opened, 1U);
  const auto idle_until = std::chrono::steady_clock::now() + 1100ms;
  run(io, sleep_until([&] { return std::chrono::steady_clock::now() >= idle_until; }));
  EXPECT_EQ(get(io, client, server.url("/c")).body, "/c");

  EXPECT_EQ(client.stats().connections_opened, 2U);
  EXPECT_EQ(client.stats().idle_connections, 1U);
}

TEST(HttpClient, DoesNotReuseAConnectionTheServerAskedToClose) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) {
    return Reply{response(200, {{"Connection", "close"}}, "bye"), /*close=*/true};
  });
  HttpClient client(io.get_executor(), {});

  EXPECT_EQ(get(io, client, server.url("/1")).body, "bye");
  EXPECT_EQ(get(io, client, server.url("/2")).body, "bye");

  EXPECT_EQ(client.stats().connections_opened, 2U);
  EXPECT_EQ(client.stats().idle_connections, 0U);
}

TEST(HttpClient, RetriesOnAFreshConnectionWhenTheIdleOneWasClosedByTheServer) {
  asio::io_context io;
  // Answers as if keeping the connection alive, then closes it: what an idle timeout on the server does.
  TestServer server(io, [](const WireRequest& request) {
    return Reply{ok(std::string(request.target())), /*close=*/true};
  });
  HttpClient client(io.get_executor(), {});

  EXPECT_EQ(get(io, client, server.url("/first")).body, "/first");
  run(io, sleep_until([&] { return server.state().closed == 1; }));
  EXPECT_EQ(client.stats().idle_connections, 1U);  // the client does not know yet
  EXPECT_EQ(get(io, client, server.url("/second")).body, "/second");

  EXPECT_EQ(client.stats().connections_opened, 2U);
  EXPECT_EQ(client.stats().requests, 2U);
  EXPECT_EQ(server.state().accepted, 2);
}

TEST(HttpClient, DoesNotRetryARequestThatWasPartlyAnswered) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest& request) {
    if (request.target() == "/first") return Reply{ok("fine")};
    return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", /*close=*/true};
  });
  HttpClient client(io.get_executor(), {});

  EXPECT_EQ(get(io, client, server.url("/first")).body, "fine");
  const auto error = fetch_error(io, client, {.method = "POST", .url = server.url("/second"), .body = "{}"});

  EXPECT_EQ(error.kind(), Kind::kProtocol);
  EXPECT_NE(std::string(error.what()).find("closed the connection before the response was complete"),
            std::string::npos)
      << error.what();
  EXPECT_EQ(server.state().requests.size(), 2U);  // not sent a second time
}

TEST(HttpClient, KeepsAtMostTheConfiguredIdleConnectionsPerOrigin) {
  asio::io_context client_io;
  asio::io_context server_io;
  // No answer leaves before all 12 requests have arrived, so all are in flight at once and each needs
  // its own connection. The handler and the holds run on the server's one thread. (After 20 s they give
  // up waiting, so a failure ends in the assertions below rather than in a hang.)
  constexpr int kRequests = 12;
  int arrived = 0;
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  TestServer server(server_io, [&arrived, give_up](const WireRequest& request) {
    ++arrived;
    return Reply{.raw = ok(std::string(request.target())),
                 .hold = [&arrived, give_up] { return arrived >= kRequests || std::chrono::steady_clock::now() > give_up; }};
  });
  const std::string base = server.url("");
  std::thread server_thread([&] { server_io.run(); });
  auto client_work = asio::make_work_guard(client_io);
  std::vector<std::thread> client_threads;
  for (int i = 0; i < 2; ++i) client_threads.emplace_back([&] { client_io.run(); });
  HttpClient client(client_io.get_executor(), {.max_idle_connections_per_origin = 3});

  std::vector<std::future<ClientResponse>> answers;
  for (int i = 0; i < kRequests; ++i) {
    answers.push_back(asio::co_spawn(client_io, client.send({.url = base + "/r" + std::to_string(i)}),
                                     asio::use_future));
  }
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(answers[static_cast<std::size_t>(i)].wait_for(30s), std::future_status::ready);
    EXPECT_EQ(answers[static_cast<std::size_t>(i)].get().body, "/r" + std::to_string(i));
  }
  const auto stats = client.stats();

  client_work.reset();
  for (auto& thread : client_threads) thread.join();
  server_io.stop();
  server_thread.join();
  EXPECT_EQ(stats.requests, 12U);
  EXPECT_EQ(stats.connections_opened, 12U);
  EXPECT_EQ(stats.idle_connections, 3U);
}

TEST(HttpClient, HttpsUrlAgainstAPlainServerIsATlsError) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) { return Reply{ok("plain")}; });
  HttpClient client(io.get_executor(), {});

  const auto error =
      fetch_error(io, client, {.url = "https://127.0.0.1:" + std::to_string(server.port()) + "/"});

  EXPECT_EQ(error.kind(), Kind::kTls);
  EXPECT_TRUE(std::string(error.what()).starts_with("TLS handshake with 127.0.0.1:" + std::to_string(server.port()) +
                                                    " failed: "))
      << error.what();
}

TEST(HttpClient, RejectsASelfSignedCertificateByDefault) {
  asio::io_context io;
  const auto certificate = make_self_signed("127.0.0.1", "IP:127.0.0.1");
  TestServer server(io, [](const WireRequest&) { return Reply{ok("secret")}; }, server_tls(certificate));
  HttpClient client(io.get_executor(), {});

  const auto error = fetch_error(io, client, {.url = server.url("/")});

  EXPECT_EQ(error.kind(), Kind::kTls);
  EXPECT_EQ(std::string(error.what()), "TLS handshake with 127.0.0.1:" + std::to_string(server.port()) +
                                           " failed: certificate verify failed: self-signed certificate");
  EXPECT_TRUE(server.state().requests.empty());
}

TEST(HttpClient, TrustsTheCaFileAndSendsSniForHostNames) {
  asio::io_context io;
  const auto certificate = make_self_signed("localhost", "DNS:localhost,IP:127.0.0.1");
  const TempFile ca_file(certificate.cert_pem);
  TestServer server(io, [](const WireRequest&) { return Reply{ok("over tls")}; }, server_tls(certificate));
  HttpClient client(io.get_executor(), {.ca_file = ca_file.path.string()});

  EXPECT_EQ(get(io, client, server.url("/by-name", "localhost")).body, "over tls");
  EXPECT_EQ(get(io, client, server.url("/by-ip", "127.0.0.1")).body, "over tls");
  EXPECT_EQ(get(io, client, server.url("/by-ip-again", "127.0.0.1")).body, "over tls");

  EXPECT_EQ(server.state().server_names, (std::vector<std::string>{"localhost", ""}));  // no SNI for IPs
  EXPECT_EQ(server.state().requests.at(0)[bhttp::field::host], "localhost:" + std::to_string(server.port()));
  EXPECT_EQ(client.stats().connections_opened, 2U);  // one per origin: localhost and 127.0.0.1
}

TEST(HttpClient, RejectsATrustedCertificateIssuedForAnotherHost) {
  asio::io_context io;
  const auto certificate = make_self_signed("payer.example.com", "DNS:payer.example.com");
  const TempFile ca_file(certificate.cert_pem);
  TestServer server(io, [](const WireRequest&) { return Reply{ok("secret")}; }, server_tls(certificate));
  HttpClient client(io.get_executor(), {.ca_file = ca_file.path.string()});

  const auto by_ip = fetch_error(io, client, {.url = server.url("/", "127.0.0.1")});
  const auto by_name = fetch_error(io, client, {.url = server.url("/", "localhost")});

  EXPECT_EQ(by_ip.kind(), Kind::kTls);
  EXPECT_NE(std::string(by_ip.what()).find("certificate verify failed: IP address mismatch"), std::string::npos)
      << by_ip.what();
  EXPECT_EQ(by_name.kind(), Kind::kTls);
  EXPECT_NE(std::string(by_name.what()).find("certificate verify failed: hostname mismatch"), std::string::npos)
      << by_name.what();
  EXPECT_TRUE(server.state().requests.empty());
}

TEST(HttpClient, AcceptsAnyCertificateWhenVerificationIsOff) {
  asio::io_context io;
  const auto certificate = make_self_signed("payer.example.com", "DNS:payer.example.com");
  TestServer server(io, [](const WireRequest&) { return Reply{ok("unverified")}; }, server_tls(certificate));
  HttpClient client(io.get_executor(), {.verify_tls = false});

  EXPECT_EQ(get(io, client, server.url("/")).body, "unverified");
}

TEST(HttpClient, ACaFileThatCannotBeLoadedFailsConstruction) {
  asio::io_context io;
  const TempFile not_pem("this is not a certificate");
  for (const std::string& path : {std::string("/nonexistent/ca.pem"), not_pem.path.string()}) {
    try {
      HttpClient client(io.get_executor(), {.ca_file = path});
      ADD_FAILURE() << "constructed with ca_file " << path;
    } catch (const std::runtime_error& error) {
      EXPECT_TRUE(std::string(error.what()).starts_with("cannot load the CA file \"" + path + "\" (ca_file): "))
          << error.what();
    }
  }
}

TEST(HttpClient, RejectsUrlsAndHeadersItCannotSend) {
  asio::io_context io;
  HttpClient client(io.get_executor(), {});
  const std::vector<std::pair<ClientRequest, std::string>> cases = {
      {{.url = "ftp://example.com/file"}, "only http and https URLs are supported, not \"ftp:\""},
      {{.url = "not a url"}, "\"not a url\" is not an absolute URL"},
      {{.url = "http:///path"}, "the URL has no host: http://"},
      {{.url = "https://user:s3cr3t@payer.example.com/fhir"},
       "the URL of https://payer.example.com has credentials in it; send them in an Authorization header instead"},
      {{.method = "GE T", .url = "http://127.0.0.1/"}, "\"GE T\" is not an HTTP method"},
      {{.url = "http://127.0.0.1/", .headers = {{"Bad Name", "x"}}}, "\"Bad Name\" is not a header name"},
      {{.url = "http://127.0.0.1/", .headers = {{"Authorization", "Bearer s3cr3t\r\nX-Injected: 1"}}},
       "the value of the header Authorization contains a line break or NUL"},
  };
  for (const auto& [request, message] : cases) {
    const auto error = fetch_error(io, client, request);
    EXPECT_EQ(error.kind(), Kind::kProtocol) << request.url;
    EXPECT_TRUE(std::string(error.what()).starts_with(message)) << error.what();
    EXPECT_EQ(std::string(error.what()).find("s3cr3t"), std::string::npos) << error.what();
  }
  EXPECT_EQ(client.stats().connections_opened, 0U);
}

TEST(HttpClient, ErrorsNeverQuoteTheAuthorizationHeader) {
  asio::io_context io;
  TestServer server(io, [](const WireRequest&) { return Reply{.hang = true}; });
  HttpClient client(io.get_executor(), {.read_timeout_seconds = 1});
  const std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer s3cr3t"}};

  const std::vector<FetchError> errors = {
      fetch_error(io, client, {.url = server.url("/"), .headers = headers}),
      fetch_error(io, client, {.url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/", .headers = headers}),
  };
  for (const auto& error : errors) EXPECT_EQ(std::string(error.what()).find("s3cr3t"), std::string::npos) << error.what();
}

}  // namespace
